import { migration018AgentReleases } from '../018-agent-releases.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration018AgentReleases = mirroring(
  migration018AgentReleases,
  `
CREATE TABLE agent_releases (
  version          TEXT PRIMARY KEY,
  version_major    BIGINT NOT NULL,
  version_minor    BIGINT NOT NULL,
  version_patch    BIGINT NOT NULL,
  key_id           TEXT NOT NULL,
  trusted_comment  TEXT NOT NULL,
  files            TEXT NOT NULL,
  imported_at      BIGINT NOT NULL,
  imported_by      TEXT NOT NULL,
  retired_at       BIGINT,
  CHECK (version = version_major || '.' || version_minor || '.' || version_patch)
);
`,
);
