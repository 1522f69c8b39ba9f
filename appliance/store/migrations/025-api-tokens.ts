import type { Migration } from './index.ts';

/**
 * API tokens for automation (issue 13, "API tokens … hashed at rest, scoped read/write, expiring,
 * revocable"): rows of admin_api_tokens labelled 'api', made in the console by their owner.
 * - scope: 'read' tokens may only read, whatever their owner's role; other tokens are 'write'
 *   (sessions and the local CLI credential act with their owner's role).
 * - description: what the owner called it ("nightly export"), shown in the console's list.
 */
export const migration025ApiTokens: Migration = {
  version: 25,
  description: 'admin_api_tokens: scope and description (API tokens)',
  sql: `
ALTER TABLE admin_api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'write' CHECK (scope IN ('read', 'write'));
ALTER TABLE admin_api_tokens ADD COLUMN description TEXT NOT NULL DEFAULT '';
`,
};
