import { migration014ApplianceInstances } from '../014-appliance-instances.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration014ApplianceInstances = mirroring(
  migration014ApplianceInstances,
  `
CREATE TABLE appliance_instances (
  id               TEXT PRIMARY KEY,
  started_at       BIGINT NOT NULL,
  lease_expires_at BIGINT NOT NULL
);
CREATE TABLE host_streams (
  host_id      TEXT PRIMARY KEY,
  instance_id  TEXT NOT NULL,
  connected_at BIGINT NOT NULL,
  stream_id           TEXT NOT NULL,
  agent_instance_id   TEXT NOT NULL DEFAULT '',
  machine_fingerprint TEXT NOT NULL DEFAULT '',
  hostname            TEXT NOT NULL DEFAULT '',
  source              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX host_streams_by_instance ON host_streams(instance_id);
`,
);
