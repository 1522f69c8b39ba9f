import type { Db } from './database.ts';

/** One machine (agent process) seen behind a host's key while the host was flagged. */
export interface HostClaimant {
  hostId: string;
  /** The agent process instance (HostFacts.instance_id); also the claimant's id for `hosts resolve --keep`. */
  instanceId: string;
  machineFingerprint: string;
  hostname: string;
  /** The peer address its stream came from. */
  source: string;
  firstSeen: number;
  lastSeen: number;
}

interface HostClaimantRow {
  host_id: string;
  instance_id: string;
  machine_fingerprint: string;
  hostname: string;
  source: string;
  first_seen: number;
  last_seen: number;
}

/** At most this many claimants are kept per host: a flapping fleet of clones cannot grow the table without bound. */
export const MAX_CLAIMANTS_PER_HOST = 16;

/** Owns the host_claimants table (migration 006). */
export class HostClaimantStore {
  readonly #upsert;
  readonly #evictStalest;
  readonly #list;
  readonly #clear;

  constructor(db: Db) {
    this.#upsert = db.prepare(
      `INSERT INTO host_claimants (host_id, instance_id, machine_fingerprint, hostname, source, first_seen, last_seen)
       VALUES (@hostId, @instanceId, @machineFingerprint, @hostname, @source, @at, @at)
       ON CONFLICT (host_id, instance_id) DO UPDATE SET machine_fingerprint = excluded.machine_fingerprint,
         hostname = excluded.hostname, source = excluded.source, last_seen = excluded.last_seen`,
    );
    this.#evictStalest = db.prepare(
      `DELETE FROM host_claimants WHERE host_id = @hostId AND instance_id = (
         SELECT instance_id FROM host_claimants WHERE host_id = @hostId ORDER BY last_seen, instance_id LIMIT 1)
       AND (SELECT count(*) FROM host_claimants WHERE host_id = @hostId) >= ${MAX_CLAIMANTS_PER_HOST}
       AND NOT EXISTS (SELECT 1 FROM host_claimants WHERE host_id = @hostId AND instance_id = @instanceId)`,
    );
    this.#list = db.prepare<[string], HostClaimantRow>('SELECT * FROM host_claimants WHERE host_id = ? ORDER BY first_seen, instance_id');
    this.#clear = db.prepare<[string]>('DELETE FROM host_claimants WHERE host_id = ?');
  }

  /**
   * Records (or refreshes) a claimant. Beyond MAX_CLAIMANTS_PER_HOST the one seen longest ago makes
   * room, so the machines streaming now (the one an admin will keep among them) stay selectable.
   * Callers run it inside a transaction when it must be atomic with other writes.
   */
  seen(claimant: Omit<HostClaimant, 'firstSeen' | 'lastSeen'>, at: number): void {
    this.#evictStalest.run({ hostId: claimant.hostId, instanceId: claimant.instanceId });
    this.#upsert.run({ ...claimant, at });
  }

  list(hostId: string): HostClaimant[] {
    return this.#list.all(hostId).map((row) => ({
      hostId: row.host_id,
      instanceId: row.instance_id,
      machineFingerprint: row.machine_fingerprint,
      hostname: row.hostname,
      source: row.source,
      firstSeen: row.first_seen,
      lastSeen: row.last_seen,
    }));
  }

  clear(hostId: string): void {
    this.#clear.run(hostId);
  }
}
