import type { Logger } from 'pino';
import { CtOpsError, type ErrorCode } from '../../common/errors.ts';

/**
 * Who was refused: the host once its JWT was read, otherwise the connection's source
 * (appliance/lib/peer-source.ts: an IPv4 address or an IPv6 /64, so a reconnecting peer stays one peer).
 */
export interface RefusedPeer {
  host_id?: string;
  peer?: string;
}

/** Failures of ours rather than of the peer's input: their first occurrence keeps its stack. */
const OUR_FAILURES: ReadonlySet<ErrorCode> = new Set(['ERR_INTERNAL', 'ERR_DATABASE']);

interface PeerRefusals {
  who: RefusedPeer;
  counts: Map<ErrorCode, number>;
}

/** The summary interval: one line per refused peer per minute at most, plus its first refusal. */
export const REFUSAL_LOG_INTERVAL_MS = 60_000;
/** Peers remembered per interval; the rest are summed under one "others" line. */
const MAX_PEERS = 10_000;
/** A refusal's message is ours, but may quote a bounded piece of the peer's input. */
const MAX_MESSAGE_CHARS = 200;

/**
 * Refusals of what peers sent on the ingest service (bad Registers, bad messages, bad task
 * reports, rate limits), logged without stack traces and aggregated, so one hostile message of 20,000 bad items, or a peer refused in
 * a loop, costs two log lines a minute, not one per item: the first refusal of a peer in an
 * interval at once (`ingest refused`: code and message, for the operator to see why), then at the
 * end of the interval the counts by code when there were more (`ingest refusals`:
 * {host_id | peer, refused: {code: count}, interval_s}).
 */
export class RefusalLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #peers = new Map<string, PeerRefusals>();
  readonly #timer: NodeJS.Timeout;

  constructor(log: Logger, intervalMs = REFUSAL_LOG_INTERVAL_MS) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#timer = setInterval(() => this.flush(), intervalMs);
    this.#timer.unref();
  }

  /** Records one refusal; `what` names the refused thing ("register", "heartbeat", "task report", "inventory chunk"). */
  refused(who: RefusedPeer, error: unknown, what: string): void {
    const known = error instanceof CtOpsError ? error : undefined;
    const code: ErrorCode = known?.code ?? 'ERR_INTERNAL';
    const key = who.host_id ?? who.peer ?? 'unknown';
    let entry = this.#peers.get(key);
    if (!entry) {
      if (this.#peers.size >= MAX_PEERS) {
        entry = this.#peers.get('others') ?? { who: { peer: 'others' }, counts: new Map() };
        this.#peers.set('others', entry);
      } else {
        entry = { who, counts: new Map() };
        this.#peers.set(key, entry);
        const message = (known?.message ?? 'internal error').slice(0, MAX_MESSAGE_CHARS);
        const cause = OUR_FAILURES.has(code) ? { err: error } : {};
        this.#log.warn({ ...who, what, code, message, ...cause }, 'ingest refused');
      }
    }
    entry.counts.set(code, (entry.counts.get(code) ?? 0) + 1);
  }

  /** Logs the counts of every peer refused more than once since the last flush, and starts a new interval. */
  flush(): void {
    for (const { who, counts } of this.#peers.values()) {
      const total = [...counts.values()].reduce((sum, count) => sum + count, 0);
      if (total > 1) this.#log.warn({ ...who, refused: Object.fromEntries(counts), interval_s: this.#intervalMs / 1000 }, 'ingest refusals');
    }
    this.#peers.clear();
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
