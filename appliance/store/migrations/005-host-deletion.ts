import type { Migration } from './index.ts';

/**
 * Deleting a host is a soft delete: the row stays, with its public key, so the key is retired
 * for good (hosts.public_key is UNIQUE: a later Register with it finds this row and is refused),
 * and its inventory and task history stay readable. Deleted hosts leave the host list and the
 * fingerprint check, so the machine can enrol again with a new key.
 */
export const migration005HostDeletion: Migration = {
  version: 5,
  description: 'hosts: soft delete (deleted_at, deleted_by) retiring the key',
  sql: `
ALTER TABLE hosts ADD COLUMN deleted_at INTEGER;
ALTER TABLE hosts ADD COLUMN deleted_by TEXT;
`,
};
