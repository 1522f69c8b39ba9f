import type { Migration } from './index.ts';

/**
 * The latest expires_at (ms since the epoch) of any register_nonces row ever pruned: a Register
 * whose challenge or nonce expires at or before it can no longer be told from a replay (its row
 * may be gone), so it is refused. Without it, an appliance clock stepped forward (rows pruned)
 * and back would accept a captured Register again. One row; 0 before any prune.
 */
export const migration009RegisterNonceWatermark: Migration = {
  version: 9,
  description: 'register_nonce_watermark',
  sql: `
CREATE TABLE register_nonce_watermark (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  pruned_through  INTEGER NOT NULL
);
INSERT INTO register_nonce_watermark (id, pruned_through) VALUES (1, 0);
`,
};
