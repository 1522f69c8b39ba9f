import type { Selectable } from 'kysely';
import type { HostUpdate, UpdatePhase } from '../model/rollout.ts';
import { HOSTS_PER_STATEMENT, slices } from './runs.ts';
import type { HostUpdatesTable } from './schema.ts';
import type { Executor } from './unit-of-work.ts';

export type { HostUpdate, UpdatePhase } from '../model/rollout.ts';

/**
 * Owns the host_updates table (each host's latest update attempt) and update_blocks (the versions
 * not to offer a host again), migration 019.
 */
export class HostUpdateStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /** Stores the host's latest update attempt, replacing the one stored (every column). Rejects with a foreign-key violation for an unknown host. */
  async record(update: HostUpdate): Promise<void> {
    await this.#db
      .insertInto('host_updates')
      .values({
        host_id: update.hostId,
        version: update.version,
        phase: update.phase,
        error_code: update.errorCode,
        detail: update.detail,
        rollout_id: update.rolloutId,
        updated_at: update.updatedAt,
      })
      .onConflict((conflict) =>
        conflict.column('host_id').doUpdateSet((eb) => ({
          version: eb.ref('excluded.version'),
          phase: eb.ref('excluded.phase'),
          error_code: eb.ref('excluded.error_code'),
          detail: eb.ref('excluded.detail'),
          rollout_id: eb.ref('excluded.rollout_id'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .execute();
  }

  async get(hostId: string): Promise<HostUpdate | undefined> {
    const row = await this.#db.selectFrom('host_updates').selectAll().where('host_id', '=', hostId).executeTakeFirst();
    return row && toHostUpdate(row);
  }

  /** The updates of the hosts among `hostIds` that have one, in no particular order; HOSTS_PER_STATEMENT ids per statement. */
  async list(hostIds: readonly string[]): Promise<HostUpdate[]> {
    const updates: HostUpdate[] = [];
    for (const slice of slices(hostIds, HOSTS_PER_STATEMENT)) {
      const rows = await this.#db.selectFrom('host_updates').selectAll().where('host_id', 'in', slice).execute();
      updates.push(...rows.map(toHostUpdate));
    }
    return updates;
  }

  /** Blocks `version` for the host at `at` (ms) for `reason`; a block already stored is kept as it is. */
  async block(hostId: string, version: string, reason: string, at: number): Promise<void> {
    await this.#db
      .insertInto('update_blocks')
      .values({ host_id: hostId, version, reason, blocked_at: at })
      .onConflict((conflict) => conflict.columns(['version', 'host_id']).doNothing())
      .execute();
  }

  /** The hosts `version` is blocked for, by id. */
  async blockedHosts(version: string): Promise<string[]> {
    const rows = await this.#db.selectFrom('update_blocks').select('host_id').where('version', '=', version).orderBy('host_id').execute();
    return rows.map((row) => row.host_id);
  }

  /** The hosts whose latest update is of `version` and in one of `phases`, by id. */
  async hostsIn(version: string, phases: readonly UpdatePhase[]): Promise<string[]> {
    const rows = await this.#db.selectFrom('host_updates').select('host_id').where('version', '=', version).where('phase', 'in', phases).orderBy('host_id').execute();
    return rows.map((row) => row.host_id);
  }

  /** The latest update attempts in one of `phases` that changed at or after `since`, newest first, at most `limit`. */
  async recentIn(phases: readonly UpdatePhase[], since: number, limit: number): Promise<HostUpdate[]> {
    const rows = await this.#db.selectFrom('host_updates').selectAll().where('phase', 'in', phases).where('updated_at', '>=', since).orderBy('updated_at', 'desc').limit(limit).execute();
    return rows.map(toHostUpdate);
  }

  /**
   * Forgets how `version` ended (failed or rolled back) on every host, or on `hostId`, so it is offered
   * there again; the hosts' rows are removed. How many were removed.
   */
  async forgetOutcomes(version: string, hostId?: string): Promise<number> {
    const query = this.#db.deleteFrom('host_updates').where('version', '=', version).where('phase', 'in', ['failed', 'rolled_back']);
    const result = await (hostId === undefined ? query : query.where('host_id', '=', hostId)).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** Clears the blocks of `version`: of every host, or only of `hostId` when given. How many were removed. */
  async clearBlocks(version: string, hostId?: string): Promise<number> {
    const query = this.#db.deleteFrom('update_blocks').where('version', '=', version);
    const result = await (hostId === undefined ? query : query.where('host_id', '=', hostId)).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

function toHostUpdate(row: Selectable<HostUpdatesTable>): HostUpdate {
  return {
    hostId: row.host_id,
    version: row.version,
    phase: row.phase,
    errorCode: row.error_code,
    detail: row.detail,
    rolloutId: row.rollout_id,
    updatedAt: row.updated_at,
  };
}
