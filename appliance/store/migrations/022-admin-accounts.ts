import type { Migration } from './index.ts';

/**
 * Admin accounts for the console (issue 13, "Accounts and access"):
 * - admin_users.role: 'admin' may do everything, 'viewer' reads only;
 * - admin_users.disabled_at: a disabled account logs in to nothing and its credentials are gone;
 * - admin_users.must_change_password: set on a one-time password (the first admin's, `admin create`,
 *   `admin passwd`); its sessions may change the password and log out, nothing else, until it is changed;
 * - admin_api_tokens.last_used_at: a console session's idle timeout counts from it.
 * Accounts that exist already are admins with a password of their own choosing.
 */
export const migration022AdminAccounts: Migration = {
  version: 22,
  description: 'admin accounts: roles, disabling, forced password change, session idle time',
  sql: `
ALTER TABLE admin_users ADD COLUMN role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'viewer'));
ALTER TABLE admin_users ADD COLUMN disabled_at INTEGER;
ALTER TABLE admin_users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1));
ALTER TABLE admin_api_tokens ADD COLUMN last_used_at INTEGER;
`,
};
