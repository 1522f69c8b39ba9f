import type { Selectable } from 'kysely';
import { CtOpsError } from '../../common/errors.ts';
import { OPEN_ROLLOUT_STATES, type GroupSelector, type Rollout, type RolloutGroup, type RolloutState } from '../model/rollout.ts';
import { HOSTS_PER_STATEMENT, slices } from './runs.ts';
import type { RolloutGroupsTable, RolloutsTable } from './schema.ts';
import { atomically, type Executor } from './unit-of-work.ts';

export type { GroupSelector, Rollout, RolloutGroup, RolloutState } from '../model/rollout.ts';

type RolloutRow = Selectable<RolloutsTable>;
type GroupRow = Selectable<RolloutGroupsTable>;

/** Owns the rollouts and rollout_groups tables (migration 019): a rollout is written and read with its groups. */
export class RolloutStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /**
   * Stores a rollout and its groups, both or neither (in the caller's transaction, or one of its
   * own). Rejects with the backend's constraint error (constraint-violation.ts) for a stored id, an
   * unknown organisation or release version, a second open rollout of the organisation, two groups at
   * one position, or a success percent outside 1–100.
   */
  async insert(rollout: Rollout): Promise<void> {
    await atomically(this.#db, async (db) => {
      await db
        .insertInto('rollouts')
        .values({
          id: rollout.id,
          org_id: rollout.orgId,
          version: rollout.version,
          state: rollout.state,
          halted_reason: rollout.haltedReason,
          created_at: rollout.createdAt,
          created_by: rollout.createdBy,
          updated_at: rollout.updatedAt,
        })
        .execute();
      if (rollout.groups.length === 0) return;
      await db
        .insertInto('rollout_groups')
        .values(
          rollout.groups.map((group) => ({
            rollout_id: rollout.id,
            position: group.position,
            name: group.name,
            selector: JSON.stringify(selectorFields(group.selector)),
            success_percent: group.successPercent,
            started_at: group.startedAt,
            maintenance_window: group.maintenanceWindow,
          })),
        )
        .execute();
    });
  }

  /** The rollout with its groups; undefined when there is none of that id. Throws ERR_DATABASE for a stored selector that is not one. */
  async get(id: string): Promise<Rollout | undefined> {
    const row = await this.#db.selectFrom('rollouts').selectAll().where('id', '=', id).executeTakeFirst();
    return row && (await this.#withGroups([row]))[0];
  }

  /**
   * The organisation's rollout in an open state (OPEN_ROLLOUT_STATES), with its groups; the newest
   * should several be open. Undefined when none is. Throws ERR_DATABASE as get does.
   */
  async open(orgId: string): Promise<Rollout | undefined> {
    const row = await this.#newestFirst(orgId).where('state', 'in', OPEN_ROLLOUT_STATES).limit(1).executeTakeFirst();
    return row && (await this.#withGroups([row]))[0];
  }

  /** The organisation's newest `limit` rollouts, whatever their state, newest first, with their groups. Throws ERR_DATABASE as get does. */
  async list(orgId: string, limit: number): Promise<Rollout[]> {
    return this.#withGroups(await this.#newestFirst(orgId).limit(limit).execute());
  }

  /**
   * Moves the rollout to `to` at `at` (ms since the epoch, its updated_at) with `haltedReason`, only
   * while its state is one of `from`: concurrent transitions decide by the row, not by what each
   * read. True when it moved; false when it is unknown, in another state or `from` is empty (nothing changed).
   */
  async setState(id: string, from: readonly RolloutState[], to: RolloutState, at: number, haltedReason: string | null): Promise<boolean> {
    if (from.length === 0) return false;
    const result = await this.#db
      .updateTable('rollouts')
      .set({ state: to, halted_reason: haltedReason, updated_at: at })
      .where('id', '=', id)
      .where('state', 'in', from)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Records that the group at `position` was offered the release at `at` (ms); false when it had started already or does not exist (its first start kept). */
  async startGroup(id: string, position: number, at: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('rollout_groups')
      .set({ started_at: at })
      .where('rollout_id', '=', id)
      .where('position', '=', position)
      .where('started_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** The organisation's rollouts, newest first (rollouts_org_created; the id orders rollouts created in the same ms). */
  #newestFirst(orgId: string) {
    return this.#db.selectFrom('rollouts').selectAll().where('org_id', '=', orgId).orderBy('created_at', 'desc').orderBy('id', 'desc');
  }

  /** `rows` as rollouts, in their order, each with its groups in position order. */
  async #withGroups(rows: readonly RolloutRow[]): Promise<Rollout[]> {
    const groups = new Map<string, RolloutGroup[]>(rows.map((row) => [row.id, []]));
    // A bound on the ids of one statement like any list of host ids (list's limit is the caller's).
    for (const ids of slices([...groups.keys()], HOSTS_PER_STATEMENT)) {
      const groupRows = await this.#db.selectFrom('rollout_groups').selectAll().where('rollout_id', 'in', ids).orderBy('rollout_id').orderBy('position').execute();
      for (const groupRow of groupRows) groups.get(groupRow.rollout_id)!.push(toGroup(groupRow));
    }
    return rows.map((row) => toRollout(row, groups.get(row.id)!));
  }
}

/** Only the fields of a selector's kind, in their order: what the selector column holds. */
function selectorFields(selector: GroupSelector): GroupSelector {
  switch (selector.kind) {
    case 'all':
      return { kind: 'all' };
    case 'tag':
      return { kind: 'tag', key: selector.key, value: selector.value };
    case 'hosts':
      return { kind: 'hosts', hostIds: [...selector.hostIds] };
  }
}

function isGroupSelector(value: unknown): value is GroupSelector {
  if (typeof value !== 'object' || value === null) return false;
  const fields = value as Record<string, unknown>;
  switch (fields.kind) {
    case 'all':
      return true;
    case 'tag':
      return typeof fields.key === 'string' && typeof fields.value === 'string';
    case 'hosts':
      return Array.isArray(fields.hostIds) && fields.hostIds.every((hostId) => typeof hostId === 'string');
    default:
      return false;
  }
}

/**
 * The selector column of a group row read back. This store writes it, but it decides which hosts
 * are offered a release, so a row that does not hold a selector is an error (ERR_DATABASE), never
 * a group of no hosts or of every host.
 */
function parseSelector(row: GroupRow): GroupSelector {
  const details = { rollout_id: row.rollout_id, position: row.position };
  const group = `group ${row.position} of rollout ${row.rollout_id}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.selector);
  } catch (cause) {
    throw new CtOpsError('ERR_DATABASE', `the stored selector of ${group} is not JSON`, details, { cause });
  }
  if (!isGroupSelector(parsed)) {
    throw new CtOpsError('ERR_DATABASE', `the stored selector of ${group} is not {kind: all}, {kind: tag, key, value} or {kind: hosts, hostIds}`, details);
  }
  return selectorFields(parsed);
}

function toGroup(row: GroupRow): RolloutGroup {
  return { position: row.position, name: row.name, selector: parseSelector(row), successPercent: row.success_percent, startedAt: row.started_at, maintenanceWindow: row.maintenance_window };
}

function toRollout(row: RolloutRow, groups: readonly RolloutGroup[]): Rollout {
  return {
    id: row.id,
    orgId: row.org_id,
    version: row.version,
    state: row.state,
    haltedReason: row.halted_reason,
    createdAt: row.created_at,
    createdBy: row.created_by,
    updatedAt: row.updated_at,
    groups,
  };
}
