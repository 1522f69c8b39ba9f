import type { Logger } from 'pino';
import type { CtOpsError, ErrorCode } from '../../common/errors.ts';

/** Sources tracked per interval; refusals from any further source are counted under OTHER_SOURCES. */
const MAX_SOURCES = 1_000;
const OTHER_SOURCES = 'other';

/** The stable log messages of the two lines. */
export interface RefusalMessages {
  readonly first: string;
  readonly summary: string;
}

interface SourceTally {
  /** Refusals after the first one of the interval, by code. */
  readonly suppressed: Map<ErrorCode, number>;
}

/**
 * Logs refusals without one line per refused request, so a flood cannot turn into
 * megabytes of log: the first refusal of a source in an interval is logged at once
 * ({source, code, reason}, warn, no stack), the rest are counted and logged when the
 * interval ends as one line per source ({source, refused: {CODE: count}, interval_s}).
 * At most two lines per source per interval.
 */
export class RefusalTally {
  readonly #log: Logger;
  readonly #messages: RefusalMessages;
  readonly #intervalMs: number;
  #sources = new Map<string, SourceTally>();
  readonly #timer: NodeJS.Timeout;

  constructor(log: Logger, messages: RefusalMessages, intervalMs: number) {
    this.#log = log;
    this.#messages = messages;
    this.#intervalMs = intervalMs;
    this.#timer = setInterval(() => this.flush(), intervalMs);
    // The tally never keeps the process alive; a stop loses at most one interval's counts.
    this.#timer.unref();
  }

  record(source: string, error: CtOpsError): void {
    const key = this.#sources.has(source) || this.#sources.size < MAX_SOURCES ? source : OTHER_SOURCES;
    const tally = this.#sources.get(key);
    if (tally === undefined) {
      this.#sources.set(key, { suppressed: new Map() });
      this.#log.warn({ source: key, code: error.code, reason: error.message }, this.#messages.first);
      return;
    }
    tally.suppressed.set(error.code, (tally.suppressed.get(error.code) ?? 0) + 1);
  }

  /** Logs the counts of the interval that ends now and starts a new one. */
  flush(): void {
    const ended = this.#sources;
    this.#sources = new Map();
    for (const [source, { suppressed }] of ended) {
      if (suppressed.size === 0) continue;
      this.#log.warn({ source, refused: Object.fromEntries(suppressed), interval_s: this.#intervalMs / 1000 }, this.#messages.summary);
    }
  }
}
