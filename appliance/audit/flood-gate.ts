import type { Logger } from 'pino';

/** Refusals of requests without a credential recorded per source and window; the rest are counted. */
export const AUDIT_FLOOD_LIMIT = 30;
export const AUDIT_FLOOD_WINDOW_MS = 60_000;
/** Sources tracked per window; beyond it, new sources share one budget (key 'others'). */
const MAX_SOURCES = 10_000;

/**
 * Bounds what anyone without a credential can make the audit log store: per source (an IPv4 address
 * or IPv6 /64) at most AUDIT_FLOOD_LIMIT refusals a window are recorded, so a flood of bad logins or
 * unauthenticated calls cannot fill the disk. Windows follow the clock (each minute from :00), so
 * what a burst may record does not depend on when the process started. What is not recorded is
 * counted; once its window is over (at the next admission, or within a window by a timer) one warning
 * per source says how many (`audit events not recorded`: {source, dropped, limit, window_s}).
 */
export class AuditFloodGate {
  readonly #log: Logger;
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #sources = new Map<string, { recorded: number; dropped: number }>();
  readonly #timer: NodeJS.Timeout;
  #window = 0;

  constructor(log: Logger, options: { limit?: number; windowMs?: number } = {}) {
    this.#log = log;
    this.#limit = options.limit ?? AUDIT_FLOOD_LIMIT;
    this.#windowMs = options.windowMs ?? AUDIT_FLOOD_WINDOW_MS;
    this.#timer = setInterval(() => this.#roll(Date.now()), this.#windowMs);
    this.#timer.unref();
  }

  /** Whether a refusal from `source` at `now` (ms) is recorded; false (and counted) past its window's limit. */
  admit(source: string, now: number): boolean {
    this.#roll(now);
    const key = this.#sources.has(source) || this.#sources.size < MAX_SOURCES ? source : 'others';
    const counts = this.#sources.get(key) ?? { recorded: 0, dropped: 0 };
    this.#sources.set(key, counts);
    if (counts.recorded < this.#limit) {
      counts.recorded += 1;
      return true;
    }
    counts.dropped += 1;
    return false;
  }

  /** Logs the sources that went over the limit in the window now over, and forgets it. */
  flush(): void {
    for (const [source, { dropped }] of this.#sources) {
      if (dropped > 0) this.#log.warn({ source, dropped, limit: this.#limit, window_s: this.#windowMs / 1000 }, 'audit events not recorded');
    }
    this.#sources.clear();
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }

  #roll(now: number): void {
    const window = Math.floor(now / this.#windowMs);
    if (window === this.#window) return;
    this.flush();
    this.#window = window;
  }
}
