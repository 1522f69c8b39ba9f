import { migration003HostFingerprintIndex } from '../003-host-fingerprint-index.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration003HostFingerprintIndex = mirroring(migration003HostFingerprintIndex, `
DROP INDEX hosts_org_fingerprint;
CREATE INDEX hosts_org_fingerprint ON hosts(org_id, machine_fingerprint, enrolled_at);
`);
