import { migration011IdentityKeyRotation } from '../011-identity-key-rotation.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration011IdentityKeyRotation = mirroring(migration011IdentityKeyRotation, `
ALTER TABLE hosts ADD COLUMN identity_rotation_nonce_sha256 BYTEA;
ALTER TABLE hosts ADD COLUMN previous_public_key BYTEA;
ALTER TABLE hosts ADD COLUMN key_rotated_at BIGINT;
CREATE INDEX hosts_previous_public_key ON hosts (previous_public_key) WHERE previous_public_key IS NOT NULL;
`);
