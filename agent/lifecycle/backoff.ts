/** The spec's reconnect schedule: 1s → 2s → 4s → 8s → 16s → 32s → 60s (capped). */
export const BACKOFF_SCHEDULE_MS = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000] as const;

/** Jitter only ever adds, up to this share, so the base schedule stays recognisable. */
export const BACKOFF_JITTER = 0.1;

/** The base delay before retry number `attempt` (0 = first retry). */
export function backoffBaseMs(attempt: number): number {
  return BACKOFF_SCHEDULE_MS[Math.min(Math.max(0, attempt), BACKOFF_SCHEDULE_MS.length - 1)] as number;
}

/**
 * Jitter on top of an appliance's retry hint: up to half again. The agents the appliance
 * throttled at once got about the same hint, and a tenth of it would not spread them.
 */
export const HINT_JITTER = 0.5;

/** Spreads agents that lost the same appliance so they do not all return in the same instant; adds at most `share` of the base. */
export function withJitter(baseMs: number, random: () => number, share: number = BACKOFF_JITTER): number {
  return baseMs + Math.floor(baseMs * share * Math.min(Math.max(random(), 0), 1));
}

/** Counts consecutive failures; a healthy stream resets it. */
export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(random: () => number) {
    this.random = random;
  }

  /**
   * The delay before the next retry (ms), advancing the schedule. With the appliance's retry
   * hint (ms, common/retry-hint.ts) it is the hint plus HINT_JITTER instead: never less than
   * the hint, and not the schedule's 1 s, which would come back while still throttled. A hint
   * under the schedule's first step counts as that step, so a hint of 0 cannot make a busy loop.
   */
  next(hintMs?: number): number {
    const delay =
      hintMs === undefined ? withJitter(backoffBaseMs(this.attempt), this.random) : withJitter(Math.max(hintMs, backoffBaseMs(0)), this.random, HINT_JITTER);
    this.attempt += 1;
    return delay;
  }

  reset(): void {
    this.attempt = 0;
  }
}
