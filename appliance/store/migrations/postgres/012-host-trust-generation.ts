import { migration012HostTrustGeneration } from '../012-host-trust-generation.ts';
import { mirroring } from './mirroring.ts';

// BIGINT, not INTEGER: the generation is a time in ms (pki/ca-rotation.ts), past PostgreSQL's 32-bit
// INTEGER (22003 out of range after the first CA rotation). Unreleased, so fixed in place.
export const postgresMigration012HostTrustGeneration = mirroring(migration012HostTrustGeneration, `ALTER TABLE hosts ADD COLUMN trust_generation BIGINT NOT NULL DEFAULT 0;`);
