import { migration025ApiTokens } from '../025-api-tokens.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration025ApiTokens = mirroring(
  migration025ApiTokens,
  `
ALTER TABLE admin_api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'write' CHECK (scope IN ('read', 'write'));
ALTER TABLE admin_api_tokens ADD COLUMN description TEXT NOT NULL DEFAULT '';
`,
);
