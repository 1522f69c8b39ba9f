import type { Migration } from './index.ts';

/**
 * The scans still receiving, by the time of their last chunk: the pass that abandons the scans that
 * went quiet (InventoryService.abandonQuietScans, every minute) reads only the open scans, not the
 * history every host keeps (up to 100 scans each). A partial index on the literal the store writes.
 */
export const migration017ReceivingScansIndex: Migration = {
  version: 17,
  description: 'software_scans_receiving: the open scans by their last chunk, for abandoning those that went quiet',
  sql: `
CREATE INDEX software_scans_receiving ON software_scans(updated_at) WHERE status = 'receiving';
`,
};
