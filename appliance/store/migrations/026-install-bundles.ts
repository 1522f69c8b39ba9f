import type { Migration } from './index.ts';

/**
 * Install bundles as a record (issue 13, "Install bundles" page: the bundles built, who built them and
 * when, their token, the hosts enrolled from them, and the fingerprints to compare at the transfer
 * station). One row per bundle the appliance's stores recorded (bundler/build/build.ts: every build
 * with the appliance as token authority; a token-none build by `ct-ops-bundle` alone reaches no
 * database and is not recorded).
 * - id is the bundle id (bnd_…); created_at Unix milliseconds; created_by the admin (or user) who built it.
 * - addresses: JSON array of the ingest targets in agent.toml; tags: JSON object written into agent.toml.
 * - token_mode 'new' | 'existing' | 'none', token_id the embedded token (null for none). No foreign key:
 *   a token row is never deleted, but the bundle is the record of what was written, not of the token.
 * - zip_file is the zip's name, zip_size its bytes, zip_sha256 its lower-case hex SHA-256; bundle_key_id
 *   and ca_fingerprint what `ct-ops-bundle verify` and the installer check: the fingerprints compared
 *   at the transfer station.
 * - withdrawn_at/by: set when the bundle was withdrawn (its requester could not take it); kept, not deleted.
 * hosts.install_bundle_id is the bundle the agent says it was installed from (agent.toml [agent]
 * install_bundle_id, sent in RegisterRequest.install_bundle_id), set once when the host row is
 * inserted. A claim, not a reference: it may name a bundle this appliance never recorded, so no foreign key.
 */
export const migration026InstallBundles: Migration = {
  version: 26,
  description: 'install_bundles: the bundles built; hosts.install_bundle_id: the bundle a host claims',
  sql: `
CREATE TABLE install_bundles (
  id              TEXT PRIMARY KEY,
  org_id          TEXT NOT NULL REFERENCES organisations(id),
  created_at      INTEGER NOT NULL,
  created_by      TEXT NOT NULL,
  os              TEXT NOT NULL,
  arch            TEXT NOT NULL,
  agent_version   TEXT NOT NULL,
  addresses       TEXT NOT NULL,
  tags            TEXT NOT NULL,
  label           TEXT NOT NULL,
  token_mode      TEXT NOT NULL CHECK (token_mode IN ('new', 'existing', 'none')),
  token_id        TEXT,
  zip_file        TEXT NOT NULL,
  zip_size        INTEGER NOT NULL,
  zip_sha256      TEXT NOT NULL,
  bundle_key_id   TEXT NOT NULL,
  ca_fingerprint  TEXT NOT NULL,
  withdrawn_at    INTEGER,
  withdrawn_by    TEXT
);
CREATE INDEX install_bundles_org_created ON install_bundles(org_id, created_at, id);
ALTER TABLE hosts ADD COLUMN install_bundle_id TEXT;
CREATE INDEX hosts_org_install_bundle ON hosts(org_id, install_bundle_id) WHERE install_bundle_id IS NOT NULL;
`,
};
