/**
 * Token buckets per key (a host id): each key may spend `burst` tokens at once and regains
 * `perSecond` tokens a second, up to `burst`. Home-made rather than a library because it is a
 * dozen lines of arithmetic on one synchronous event loop (no store, no timers, no clustering),
 * which is all the ingest service needs; the well-kept libraries (rate-limiter-flexible) bring
 * stores and promises we would not use.
 */
export interface RateLimit {
  /** Tokens available at once (messages). */
  readonly burst: number;
  /** Tokens regained per second. */
  readonly perSecond: number;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class KeyedRateLimiter {
  readonly #limit: RateLimit;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();

  /** `maxKeys` bounds the memory: beyond it, the buckets that refilled completely are forgotten (a full bucket is the default). */
  constructor(limit: RateLimit, maxKeys = 100_000) {
    this.#limit = limit;
    this.#maxKeys = maxKeys;
  }

  /** Spends one token of `key` at `nowMs`; false (and nothing spent) when none is left. */
  take(key: string, nowMs: number): boolean {
    const { burst, perSecond } = this.#limit;
    const bucket = this.#buckets.get(key) ?? { tokens: burst, updatedAt: nowMs };
    bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, nowMs - bucket.updatedAt) * perSecond) / 1000);
    bucket.updatedAt = nowMs;
    if (!this.#buckets.has(key)) {
      if (this.#buckets.size >= this.#maxKeys) this.#forgetFull(nowMs);
      this.#buckets.set(key, bucket);
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  #forgetFull(nowMs: number): void {
    const { burst, perSecond } = this.#limit;
    for (const [key, bucket] of this.#buckets) {
      if (bucket.tokens + ((nowMs - bucket.updatedAt) * perSecond) / 1000 >= burst) this.#buckets.delete(key);
    }
  }
}
