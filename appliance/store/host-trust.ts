import type { Db } from './database.ts';

/** An active host and the trust bundle generation its agent last reported. */
export interface HostTrust {
  hostId: string;
  hostname: string;
  trustGeneration: number;
}

/** Owns hosts.trust_generation (migration 012): which trust bundle each agent holds. */
export class HostTrustStore {
  readonly #record;
  readonly #active;

  constructor(db: Db) {
    this.#record = db.prepare<{ hostId: string; generation: number }>('UPDATE hosts SET trust_generation = @generation WHERE id = @hostId AND trust_generation != @generation');
    // Active, not deleted: the hosts that stream, so the ones a CA switch could cut off.
    this.#active = db.prepare<[], { id: string; hostname: string; trust_generation: number }>(
      "SELECT id, hostname, trust_generation FROM hosts WHERE approval = 'active' AND deleted_at IS NULL ORDER BY hostname, id",
    );
  }

  /** Records the generation an agent reported; a no-op write when it is the one recorded. */
  record(hostId: string, generation: number): void {
    this.#record.run({ hostId, generation });
  }

  /** Every active host with the generation it holds. */
  activeHosts(): HostTrust[] {
    return this.#active.all().map((row) => ({ hostId: row.id, hostname: row.hostname, trustGeneration: row.trust_generation }));
  }
}
