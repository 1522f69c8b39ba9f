import type { HostTrust } from '../model/host.ts';
import { compiledOnce } from './compiled-query.ts';
import type { Executor } from './unit-of-work.ts';

export type { HostTrust } from '../model/host.ts';

// Every stream opening runs it, so built once (compiled-query.ts).
const recordTrust = compiledOnce((db, values: { hostId: string; generation: number; digest: string }) =>
  db
    .updateTable('hosts')
    .set({ trust_generation: values.generation, trust_digest: values.digest })
    .where('id', '=', values.hostId)
    .where((eb) => eb.or([eb('trust_generation', '!=', values.generation), eb('trust_digest', '!=', values.digest)])),
);

/** Owns hosts.trust_generation and hosts.trust_digest (migrations 012, 013): which trust bundle each agent holds. */
export class HostTrustStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /** Records the bundle an agent reported (`digest` hex); no write when it is the one recorded. */
  async record(hostId: string, generation: number, digest: string): Promise<void> {
    await recordTrust(this.#db, { hostId, generation, digest });
  }

  /** Every host waiting for approval (no stream, so no bundle until approved). */
  async pendingHosts(): Promise<Array<{ hostId: string; hostname: string }>> {
    const rows = await this.#db.selectFrom('hosts').select(['id', 'hostname']).where('approval', '=', 'pending').where('deleted_at', 'is', null).orderBy('hostname').orderBy('id').execute();
    return rows.map((row) => ({ hostId: row.id, hostname: row.hostname }));
  }

  /** Every active host with the bundle it holds: active and not deleted are the hosts that stream, so the ones a CA switch could cut off. */
  async activeHosts(): Promise<HostTrust[]> {
    const rows = await this.#db
      .selectFrom('hosts')
      .select(['id', 'hostname', 'trust_generation', 'trust_digest'])
      .where('approval', '=', 'active')
      .where('deleted_at', 'is', null)
      .orderBy('hostname')
      .orderBy('id')
      .execute();
    return rows.map((row) => ({ hostId: row.id, hostname: row.hostname, trustGeneration: row.trust_generation, trustDigest: row.trust_digest }));
  }
}
