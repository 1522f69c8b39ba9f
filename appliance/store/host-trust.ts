import type { Db } from './database.ts';

/** An active host and the trust bundle its agent last reported. */
export interface HostTrust {
  hostId: string;
  hostname: string;
  trustGeneration: number;
  /** Hex SHA-256 of the bundle's signed payload (common/trust-bundle.ts trustBundleDigest); '' for none. */
  trustDigest: string;
}

/** Owns hosts.trust_generation and hosts.trust_digest (migrations 012, 013): which trust bundle each agent holds. */
export class HostTrustStore {
  readonly #record;
  readonly #active;
  readonly #pending;

  constructor(db: Db) {
    this.#record = db.prepare<{ hostId: string; generation: number; digest: string }>(
      'UPDATE hosts SET trust_generation = @generation, trust_digest = @digest WHERE id = @hostId AND (trust_generation != @generation OR trust_digest != @digest)',
    );
    // Active, not deleted: the hosts that stream, so the ones a CA switch could cut off.
    this.#active = db.prepare<[], { id: string; hostname: string; trust_generation: number; trust_digest: string }>(
      "SELECT id, hostname, trust_generation, trust_digest FROM hosts WHERE approval = 'active' AND deleted_at IS NULL ORDER BY hostname, id",
    );
    // Pending hosts do not stream, so they get no bundle until approved.
    this.#pending = db.prepare<[], { id: string; hostname: string }>("SELECT id, hostname FROM hosts WHERE approval = 'pending' AND deleted_at IS NULL ORDER BY hostname, id");
  }

  /** Records the bundle an agent reported (`digest` hex); a no-op write when it is the one recorded. */
  record(hostId: string, generation: number, digest: string): void {
    this.#record.run({ hostId, generation, digest });
  }

  /** Every host waiting for approval (no stream, so no bundle). */
  pendingHosts(): Array<{ hostId: string; hostname: string }> {
    return this.#pending.all().map((row) => ({ hostId: row.id, hostname: row.hostname }));
  }

  /** Every active host with the bundle it holds. */
  activeHosts(): HostTrust[] {
    return this.#active.all().map((row) => ({ hostId: row.id, hostname: row.hostname, trustGeneration: row.trust_generation, trustDigest: row.trust_digest }));
  }
}
