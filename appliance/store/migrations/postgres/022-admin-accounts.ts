import { migration022AdminAccounts } from '../022-admin-accounts.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration022AdminAccounts = mirroring(
  migration022AdminAccounts,
  `
ALTER TABLE admin_users ADD COLUMN role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'viewer'));
ALTER TABLE admin_users ADD COLUMN disabled_at BIGINT;
ALTER TABLE admin_users ADD COLUMN must_change_password SMALLINT NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1));
ALTER TABLE admin_api_tokens ADD COLUMN last_used_at BIGINT;
`,
);
