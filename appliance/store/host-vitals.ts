import type { Db } from './database.ts';

export interface VitalsSample {
  hostId: string;
  receivedAt: number;
  agentTimestamp: number;
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  uptimeSeconds: number;
}

/** Owns the host_vitals table: the heartbeat history, kept for a bounded time. */
export class HostVitalsStore {
  readonly #insert;
  readonly #recent;
  readonly #prune;

  constructor(db: Db) {
    this.#insert = db.prepare(
      `INSERT INTO host_vitals (host_id, received_at, agent_timestamp, cpu_percent, memory_percent, disk_percent, uptime_seconds)
       VALUES (@hostId, @receivedAt, @agentTimestamp, @cpuPercent, @memoryPercent, @diskPercent, @uptimeSeconds)`,
    );
    this.#recent = db.prepare<[string, number], VitalsSampleRow>(
      `SELECT host_id, received_at, agent_timestamp, cpu_percent, memory_percent, disk_percent, uptime_seconds
       FROM host_vitals WHERE host_id = ? ORDER BY received_at DESC LIMIT ?`,
    );
    this.#prune = db.prepare('DELETE FROM host_vitals WHERE received_at < ?');
  }

  insert(sample: VitalsSample): void {
    this.#insert.run(sample);
  }

  /** The newest samples of a host, newest first. */
  recent(hostId: string, limit: number): VitalsSample[] {
    return this.#recent.all(hostId, limit).map((row) => ({
      hostId: row.host_id,
      receivedAt: row.received_at,
      agentTimestamp: row.agent_timestamp,
      cpuPercent: row.cpu_percent,
      memoryPercent: row.memory_percent,
      diskPercent: row.disk_percent,
      uptimeSeconds: row.uptime_seconds,
    }));
  }

  /** Deletes samples received before `cutoff`; returns how many. */
  prune(cutoff: number): number {
    return this.#prune.run(cutoff).changes;
  }
}

interface VitalsSampleRow {
  host_id: string;
  received_at: number;
  agent_timestamp: number;
  cpu_percent: number;
  memory_percent: number;
  disk_percent: number;
  uptime_seconds: number;
}
