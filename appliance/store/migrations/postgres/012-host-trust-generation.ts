import { migration012HostTrustGeneration } from '../012-host-trust-generation.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration012HostTrustGeneration = mirroring(migration012HostTrustGeneration, `ALTER TABLE hosts ADD COLUMN trust_generation INTEGER NOT NULL DEFAULT 0;`);
