import type { HostClaimant } from '../model/host.ts';
import type { DialectName } from './dialects.ts';
import { serialiseOn, type Executor } from './unit-of-work.ts';

export type { HostClaimant } from '../model/host.ts';

/** At most this many claimants are kept per host: a flapping fleet of clones cannot grow the table without bound. */
export const MAX_CLAIMANTS_PER_HOST = 16;

/** Owns the host_claimants table (migration 006). */
export class HostClaimantStore {
  readonly #db: Executor;
  readonly #dialect: DialectName;

  constructor(executor: Executor, dialect: DialectName) {
    this.#db = executor;
    this.#dialect = dialect;
  }

  /**
   * Records (or refreshes) a claimant (`at` ms since the epoch). Beyond MAX_CLAIMANTS_PER_HOST the
   * one seen longest ago makes room, so the machines streaming now (the one an admin will keep among
   * them) stay selectable. Runs inside a transaction (ERR_INTERNAL otherwise): the eviction and the
   * upsert belong together, and the host's claimants are counted under its lock (serialiseOn), so
   * racing streams never keep more than the cap.
   */
  async seen(claimant: Omit<HostClaimant, 'firstSeen' | 'lastSeen'>, at: number): Promise<void> {
    const { hostId, instanceId } = claimant;
    await serialiseOn(this.#db, this.#dialect, `host-claimants/${hostId}`);
    await this.#db
      .deleteFrom('host_claimants')
      .where('host_id', '=', hostId)
      .where('instance_id', '=', (eb) => eb.selectFrom('host_claimants').select('instance_id').where('host_id', '=', hostId).orderBy('last_seen').orderBy('instance_id').limit(1))
      .where((eb) => eb(eb.selectFrom('host_claimants').select((count) => count.fn.countAll<number>().as('n')).where('host_id', '=', hostId), '>=', MAX_CLAIMANTS_PER_HOST))
      .where((eb) => eb.not(eb.exists(eb.selectFrom('host_claimants').select('instance_id').where('host_id', '=', hostId).where('instance_id', '=', instanceId))))
      .execute();
    await this.#db
      .insertInto('host_claimants')
      .values({ host_id: hostId, instance_id: instanceId, machine_fingerprint: claimant.machineFingerprint, hostname: claimant.hostname, source: claimant.source, first_seen: at, last_seen: at })
      .onConflict((conflict) =>
        conflict.columns(['host_id', 'instance_id']).doUpdateSet((eb) => ({
          machine_fingerprint: eb.ref('excluded.machine_fingerprint'),
          hostname: eb.ref('excluded.hostname'),
          source: eb.ref('excluded.source'),
          last_seen: eb.ref('excluded.last_seen'),
        })),
      )
      .execute();
  }

  async list(hostId: string): Promise<HostClaimant[]> {
    const rows = await this.#db.selectFrom('host_claimants').selectAll().where('host_id', '=', hostId).orderBy('first_seen').orderBy('instance_id').execute();
    return rows.map((row) => ({
      hostId: row.host_id,
      instanceId: row.instance_id,
      machineFingerprint: row.machine_fingerprint,
      hostname: row.hostname,
      source: row.source,
      firstSeen: row.first_seen,
      lastSeen: row.last_seen,
    }));
  }

  async clear(hostId: string): Promise<void> {
    await this.#db.deleteFrom('host_claimants').where('host_id', '=', hostId).execute();
  }
}
