import type { Migration } from './index.ts';

/**
 * release_minimums: the lowest agent version an organisation accepts (`releases minimum VERSION`,
 * issue 12: "the agent learns the minimum required version from the appliance"). A host below it is
 * offered that release whatever the rollout's groups and state. One row per organisation that set
 * one; the version must be an imported release. Timestamps are Unix milliseconds.
 */
export const migration020ReleaseMinimum: Migration = {
  version: 20,
  description: 'release_minimums: the lowest agent version each organisation accepts',
  sql: `
CREATE TABLE release_minimums (
  org_id   TEXT PRIMARY KEY REFERENCES organisations(id),
  version  TEXT NOT NULL REFERENCES agent_releases(version),
  set_at   INTEGER NOT NULL,
  set_by   TEXT NOT NULL
);
`,
};
