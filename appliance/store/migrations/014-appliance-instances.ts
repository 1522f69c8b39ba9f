import type { Migration } from './index.ts';

/**
 * Several ingest instances on one database (decisions.md 109): appliance_instances holds each
 * serving process's lease, renewed while it lives; host_streams says which instance holds each
 * host's current Heartbeat stream, and the machine behind it (its HostFacts; '' when the agent sent
 * none), so an instance judging a new claim sees the holder on another instance. A host is online while its row names an instance whose lease has
 * not expired, so an instance that dies takes its hosts offline when its lease runs out, whoever
 * asks. One SQLite appliance is one instance: the same tables, one row in appliance_instances.
 */
export const migration014ApplianceInstances: Migration = {
  version: 14,
  description: 'appliance_instances and host_streams: which serving instance holds each host stream',
  sql: `
CREATE TABLE appliance_instances (
  id               TEXT PRIMARY KEY,
  started_at       INTEGER NOT NULL,
  lease_expires_at INTEGER NOT NULL
);
CREATE TABLE host_streams (
  host_id      TEXT PRIMARY KEY,
  instance_id  TEXT NOT NULL,
  connected_at INTEGER NOT NULL,
  stream_id           TEXT NOT NULL,
  agent_instance_id   TEXT NOT NULL DEFAULT '',
  machine_fingerprint TEXT NOT NULL DEFAULT '',
  hostname            TEXT NOT NULL DEFAULT '',
  source              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX host_streams_by_instance ON host_streams(instance_id);
`,
};
