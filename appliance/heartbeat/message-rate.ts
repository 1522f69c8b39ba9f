import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { CtOpsError } from '../../common/errors.ts';

/** A per-host message budget (common/heartbeat-limits.ts HEARTBEAT_RATE_LIMIT). */
export interface MessageRateLimit {
  /** Messages a host may send at once beyond the steady rate. */
  readonly burst: number;
  /** Messages a second, sustained. */
  readonly perSecond: number;
}

/**
 * The Heartbeat messages, Heartbeat stream opens and inventory stream opens of each host, counted by rate-limiter-flexible: a
 * steady `perSecond` budget, and when it is spent a burst budget of `burst` per
 * burst / perSecond seconds (BurstyRateLimiter). A host flooding without pause gets at most
 * perSecond plus burst per window (2 a second with the default), an agent that beats once per
 * interval never comes near. Memory: one record per host that sent in the current window,
 * expired by the library's timers.
 */
export class HostMessageRate {
  readonly #burst: RateLimiterMemory;
  readonly #limiter: BurstyRateLimiter;

  constructor(limit: MessageRateLimit) {
    const steady = new RateLimiterMemory({ keyPrefix: 'heartbeat-steady', points: limit.perSecond, duration: 1 });
    this.#burst = new RateLimiterMemory({ keyPrefix: 'heartbeat-burst', points: limit.burst, duration: Math.ceil(limit.burst / limit.perSecond) });
    this.#limiter = new BurstyRateLimiter(steady, this.#burst);
  }

  /**
   * Spends one message of `hostId`'s budget. Rejects with ERR_STREAM_RATE_LIMITED when none is
   * left; its details.retry_after_ms (whole ms) is the time until the burst budget is back, so a
   * host that honours it returns with room for a stream open and its first heartbeats.
   */
  async take(hostId: string): Promise<void> {
    try {
      await this.#limiter.consume(hostId);
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw refusal;
      const burst = await this.#burst.get(hostId);
      const retryAfterMs = Math.max(1, Math.ceil(Math.max(burst?.msBeforeNext ?? 0, refusal.msBeforeNext)));
      throw new CtOpsError('ERR_STREAM_RATE_LIMITED', 'too many heartbeat messages or streams from this host; reconnect later', {
        host_id: hostId,
        retry_after_ms: retryAfterMs,
      });
    }
  }
}
