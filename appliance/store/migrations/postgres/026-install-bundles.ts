import { migration026InstallBundles } from '../026-install-bundles.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration026InstallBundles = mirroring(
  migration026InstallBundles,
  `
CREATE TABLE install_bundles (
  id              TEXT PRIMARY KEY,
  org_id          TEXT NOT NULL REFERENCES organisations(id),
  created_at      BIGINT NOT NULL,
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
  zip_size        BIGINT NOT NULL,
  zip_sha256      TEXT NOT NULL,
  bundle_key_id   TEXT NOT NULL,
  ca_fingerprint  TEXT NOT NULL,
  withdrawn_at    BIGINT,
  withdrawn_by    TEXT
);
CREATE INDEX install_bundles_org_created ON install_bundles(org_id, created_at, id);
ALTER TABLE hosts ADD COLUMN install_bundle_id TEXT;
CREATE INDEX hosts_org_install_bundle ON hosts(org_id, install_bundle_id) WHERE install_bundle_id IS NOT NULL;
`,
);
