import type { Db } from './database.ts';

/** What happened to a host, as its audit record keeps it. */
export type HostEventKind =
  | 'renamed'
  | 'identity-conflict'
  | 'identity-resolved'
  | 'identity-dismissed'
  | 'identity-resolution-expired'
  | 'identity-retired-claimant'
  | 'successor-enrolled'
  | 'identity-key-rotated'
  | 'replaced-by'
  | 'replaces';

export interface HostEvent {
  id: number;
  hostId: string;
  /** Unix milliseconds. */
  at: number;
  kind: HostEventKind;
  details: Record<string, unknown>;
}

/**
 * The newest events kept per host and kind, for the kinds an agent's own behaviour repeats (a host
 * renamed in a loop, a retired clone reconnecting); older ones of that kind are dropped by the
 * insert. Every other kind follows an admin's action or a state change that needs one (a flag, a
 * resolution, a replacement), so it is never dropped: churn cannot erase the audit of decisions.
 */
export const HOST_EVENTS_KEPT = 200;
const CHURN_KINDS: ReadonlySet<HostEventKind> = new Set(['renamed', 'identity-retired-claimant']);

interface HostEventRow {
  id: number;
  host_id: string;
  at: number;
  kind: HostEventKind;
  details: string;
}

/** Owns the host_events table (migration 006). */
export class HostEventStore {
  readonly #insert;
  readonly #prune;
  readonly #recent;
  readonly #ofKind;

  constructor(db: Db) {
    this.#insert = db.prepare<[string, number, string, string]>('INSERT INTO host_events (host_id, at, kind, details) VALUES (?, ?, ?, ?)');
    this.#prune = db.prepare<{ hostId: string; kind: string; kept: number }>(
      `DELETE FROM host_events WHERE host_id = @hostId AND kind = @kind
         AND id <= (SELECT id FROM host_events WHERE host_id = @hostId AND kind = @kind ORDER BY id DESC LIMIT 1 OFFSET @kept)`,
    );
    this.#recent = db.prepare<[string, string, number], HostEventRow>('SELECT * FROM host_events WHERE host_id IN (?, ?) ORDER BY id DESC LIMIT ?');
    this.#ofKind = db.prepare<[string, string, string, number], HostEventRow>('SELECT * FROM host_events WHERE host_id IN (?, ?) AND kind = ? ORDER BY id DESC LIMIT ?');
  }

  record(hostId: string, at: number, kind: HostEventKind, details: Record<string, unknown>): void {
    this.#insert.run(hostId, at, kind, JSON.stringify(details));
    if (CHURN_KINDS.has(kind)) this.#prune.run({ hostId, kind, kept: HOST_EVENTS_KEPT });
  }

  /** The newest `limit` events of the host and (when given) of the host it replaced, newest first. */
  recent(hostId: string, limit: number, replaced: string | null = null): HostEvent[] {
    return this.#recent.all(hostId, replaced ?? hostId, limit).map(toEvent);
  }

  /** The newest `limit` events of one kind, newest first (e.g. 'renamed' for the previous names). */
  ofKind(hostId: string, kind: HostEventKind, limit: number, replaced: string | null = null): HostEvent[] {
    return this.#ofKind.all(hostId, replaced ?? hostId, kind, limit).map(toEvent);
  }
}

function toEvent(row: HostEventRow): HostEvent {
  return { id: row.id, hostId: row.host_id, at: row.at, kind: row.kind, details: JSON.parse(row.details) as Record<string, unknown> };
}
