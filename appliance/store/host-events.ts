import type { HostEvent, HostEventKind } from '../model/host.ts';
import type { Executor } from './unit-of-work.ts';

export type { HostEvent, HostEventKind } from '../model/host.ts';

/**
 * The newest events kept per host and kind, for the kinds an agent's own behaviour repeats (a host
 * renamed in a loop, a retired clone reconnecting); older ones of that kind are dropped by the
 * insert. Every other kind follows an admin's action or a state change that needs one (a flag, a
 * resolution, a replacement), so it is never dropped: churn cannot erase the audit of decisions.
 */
export const HOST_EVENTS_KEPT = 200;
const CHURN_KINDS: ReadonlySet<HostEventKind> = new Set(['renamed', 'identity-retired-claimant']);

/** Owns the host_events table (migration 006). */
export class HostEventStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /** Records an event (`at` ms since the epoch); a churn kind drops that host's events of the kind beyond HOST_EVENTS_KEPT. */
  async record(hostId: string, at: number, kind: HostEventKind, details: Record<string, unknown>): Promise<void> {
    await this.#db.insertInto('host_events').values({ host_id: hostId, at, kind, details: JSON.stringify(details) }).execute();
    if (!CHURN_KINDS.has(kind)) return;
    await this.#db
      .deleteFrom('host_events')
      .where('host_id', '=', hostId)
      .where('kind', '=', kind)
      .where('id', '<=', (eb) =>
        eb.selectFrom('host_events').select('id').where('host_id', '=', hostId).where('kind', '=', kind).orderBy('id', 'desc').limit(1).offset(HOST_EVENTS_KEPT),
      )
      .execute();
  }

  /** The newest `limit` events of the host and (when given) of the host it replaced, newest first. */
  async recent(hostId: string, limit: number, replaced: string | null = null): Promise<HostEvent[]> {
    const rows = await this.#db.selectFrom('host_events').selectAll().where('host_id', 'in', [hostId, replaced ?? hostId]).orderBy('id', 'desc').limit(limit).execute();
    return rows.map(toEvent);
  }

  /** The newest `limit` events of one kind, newest first (e.g. 'renamed' for the previous names). */
  async ofKind(hostId: string, kind: HostEventKind, limit: number, replaced: string | null = null): Promise<HostEvent[]> {
    const rows = await this.#db
      .selectFrom('host_events')
      .selectAll()
      .where('host_id', 'in', [hostId, replaced ?? hostId])
      .where('kind', '=', kind)
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    return rows.map(toEvent);
  }
}

function toEvent(row: { id: number; host_id: string; at: number; kind: string; details: string }): HostEvent {
  return { id: row.id, hostId: row.host_id, at: row.at, kind: row.kind as HostEventKind, details: JSON.parse(row.details) as Record<string, unknown> };
}
