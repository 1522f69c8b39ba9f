import type { Migration } from './index.ts';

/**
 * A cloned identity is resolved by rotating the kept machine's key (appliance/hosts/key-rotation.ts):
 * - identity_rotation_nonce_sha256: SHA-256 of the nonce last offered to the kept machine; NULL
 *   when no rotation is pending. Only the hash is stored: a database copy cannot complete a rotation.
 * - previous_public_key: the key the last rotation retired (a Register by it is ERR_IDENTITY_RETIRED,
 *   and its successor proof still finds the host).
 * - key_rotated_at: when (ms since the epoch); JWTs issued before it are refused.
 */
export const migration011IdentityKeyRotation: Migration = {
  version: 11,
  description: 'host key rotation after a resolved identity conflict',
  sql: `ALTER TABLE hosts ADD COLUMN identity_rotation_nonce_sha256 BLOB;
ALTER TABLE hosts ADD COLUMN previous_public_key BLOB;
ALTER TABLE hosts ADD COLUMN key_rotated_at INTEGER;
CREATE INDEX hosts_previous_public_key ON hosts (previous_public_key) WHERE previous_public_key IS NOT NULL;`,
};
