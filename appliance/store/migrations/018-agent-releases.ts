import type { Migration } from './index.ts';

/**
 * The agent releases an admin imported (releases import), one row per version.
 *
 * - version is the key as the release names it; version_major/minor/patch are its three numbers, so
 *   SQL orders versions numerically (1.10.0 after 1.9.0, which text order gets wrong). The CHECK keeps
 *   them the key's own numbers: a row cannot sort as another version than it names.
 * - files is the signed SHA256SUMS as a JSON array of {name, sha256, size (bytes)}, sorted by name:
 *   read whole with its release, never queried by file.
 * - retired_at (null while the release may be offered) is set once; the row stays, as the record of
 *   what was imported and signed by which key.
 * - Timestamps are Unix milliseconds.
 */
export const migration018AgentReleases: Migration = {
  version: 18,
  description: 'agent_releases: imported agent releases, their signing key and files, ordered by version',
  sql: `
CREATE TABLE agent_releases (
  version          TEXT PRIMARY KEY,
  version_major    INTEGER NOT NULL,
  version_minor    INTEGER NOT NULL,
  version_patch    INTEGER NOT NULL,
  key_id           TEXT NOT NULL,
  trusted_comment  TEXT NOT NULL,
  files            TEXT NOT NULL,
  imported_at      INTEGER NOT NULL,
  imported_by      TEXT NOT NULL,
  retired_at       INTEGER,
  CHECK (version = version_major || '.' || version_minor || '.' || version_patch)
);
`,
};
