import type { Selectable } from 'kysely';
import { isErrorCode } from '../../common/errors.ts';
import type { AuditEvent, AuditEventInput, AuditFilter } from '../model/audit.ts';
import type { AuditEventsTable } from './schema.ts';
import { inSlices } from './slices.ts';
import type { Executor } from './unit-of-work.ts';

export type { AuditEvent, AuditEventInput, AuditFilter } from '../model/audit.ts';

/**
 * Rows a prune deletes per statement: a year's backlog (a shortened retention) goes in many short
 * statements with the event loop free between them (inSlices), so none holds SQLite's write lock,
 * or the heartbeats, for long.
 */
const PRUNE_BATCH = 2_000;

/** Owns the audit_events table (migration 023). Times are ms since the epoch. */
export class AuditEventStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  async insert(event: AuditEventInput): Promise<void> {
    await this.#db
      .insertInto('audit_events')
      .values({
        org_id: event.orgId,
        at: event.at,
        actor: event.actor,
        actor_kind: event.actorKind,
        source: event.source,
        action: event.action,
        target: JSON.stringify(event.target),
        outcome: event.outcome,
        error_code: event.errorCode,
        status: event.status,
      })
      .execute();
  }

  /** At most `limit` events of the organisation matching `filter`, newest (highest id) first. */
  async page(orgId: string, filter: AuditFilter, limit: number): Promise<AuditEvent[]> {
    let query = this.#db.selectFrom('audit_events').selectAll().where('org_id', '=', orgId);
    if (filter.actor !== undefined) query = query.where('actor', '=', filter.actor);
    if (filter.action !== undefined) query = query.where('action', '=', filter.action);
    if (filter.outcome !== undefined) query = query.where('outcome', '=', filter.outcome);
    if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
    if (filter.until !== undefined) query = query.where('at', '<', filter.until);
    if (filter.beforeId !== undefined) query = query.where('id', '<', filter.beforeId);
    const rows = await query.orderBy('id', 'desc').limit(limit).execute();
    return rows.map(eventOf);
  }

  /** Deletes every event (of every organisation) older than `cutoff`; returns how many. */
  async pruneBefore(cutoff: number): Promise<number> {
    return inSlices(async () => {
      const result = await this.#db
        .deleteFrom('audit_events')
        .where('id', 'in', (eb) => eb.selectFrom('audit_events').select('id').where('at', '<', cutoff).orderBy('id').limit(PRUNE_BATCH))
        .executeTakeFirst();
      const affected = Number(result.numDeletedRows);
      return { affected, more: affected === PRUNE_BATCH };
    });
  }
}

function eventOf(row: Selectable<AuditEventsTable>): AuditEvent {
  return {
    id: row.id,
    orgId: row.org_id,
    at: row.at,
    actor: row.actor,
    actorKind: row.actor_kind,
    source: row.source,
    action: row.action,
    target: JSON.parse(row.target) as Record<string, string>,
    outcome: row.outcome,
    errorCode: isErrorCode(row.error_code) ? row.error_code : null,
    status: row.status,
  };
}
