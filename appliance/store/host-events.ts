import type { Db } from './database.ts';

/** What happened to a host, as its audit record keeps it. */
export type HostEventKind =
  | 'renamed'
  | 'identity-conflict'
  | 'identity-resolved'
  | 'identity-retired-claimant'
  | 'successor-enrolled'
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

/** The newest events kept per host; older ones are dropped by the insert. */
export const HOST_EVENTS_KEPT = 200;

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
    this.#prune = db.prepare<[string, string, number]>('DELETE FROM host_events WHERE host_id = ? AND id <= (SELECT id FROM host_events WHERE host_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)');
    this.#recent = db.prepare<[string, string, number], HostEventRow>('SELECT * FROM host_events WHERE host_id IN (?, ?) ORDER BY id DESC LIMIT ?');
    this.#ofKind = db.prepare<[string, string, string, number], HostEventRow>('SELECT * FROM host_events WHERE host_id IN (?, ?) AND kind = ? ORDER BY id DESC LIMIT ?');
  }

  record(hostId: string, at: number, kind: HostEventKind, details: Record<string, unknown>): void {
    this.#insert.run(hostId, at, kind, JSON.stringify(details));
    this.#prune.run(hostId, hostId, HOST_EVENTS_KEPT);
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
