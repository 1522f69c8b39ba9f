import { migration013HostTrustDigest } from '../013-host-trust-digest.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration013HostTrustDigest = mirroring(migration013HostTrustDigest, `ALTER TABLE hosts ADD COLUMN trust_digest TEXT NOT NULL DEFAULT '';`);
