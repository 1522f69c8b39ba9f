import { migration020ReleaseMinimum } from '../020-release-minimum.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration020ReleaseMinimum = mirroring(
  migration020ReleaseMinimum,
  `
CREATE TABLE release_minimums (
  org_id   TEXT PRIMARY KEY REFERENCES organisations(id),
  version  TEXT NOT NULL REFERENCES agent_releases(version),
  set_at   BIGINT NOT NULL,
  set_by   TEXT NOT NULL
);
`,
);
