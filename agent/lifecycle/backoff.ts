/**
 * How long the agent waits before it retries a failed stream or Register.
 *
 * The spec's schedule (1 → 2 → 4 → 8 → 16 → 32 → 60 s) is the CEILING of each wait; the wait
 * itself is drawn uniformly between RETRY_FLOOR_MS and that ceiling: "full jitter" in Marc
 * Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015
 * (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/). Agents that lost
 * the same appliance at the same instant (a restart) share the schedule, so a jitter that only
 * adds a tenth brought a whole fleet back within a few hundred milliseconds (issue 9 §2); drawn
 * over the whole window, their attempts fall independently and the returns spread over it.
 */

import { unitDraw } from '../../common/random-unit.ts';

/** The spec's reconnect schedule, used as the ceiling of each wait (ms). */
export const BACKOFF_SCHEDULE_MS = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000] as const;

/**
 * The ceiling (ms) of the first wait after a healthy stream ended: the schedule's 4 s step. The
 * whole fleet loses a restarting appliance at once; drawn under the 1 s step, every agent would be
 * back within 750 ms, so an appliance back within a second would take the fleet in that time.
 * Over [250 ms, 4 s) a quarter at most comes in any one second (issue 9 §2: "the first reconnect
 * after a healthy stream spread over its whole window"; decisions.md 40).
 */
export const FIRST_WAIT_AFTER_HEALTHY_CEILING_MS = BACKOFF_SCHEDULE_MS[2];

/**
 * The shortest wait (ms) before any retry, whatever the random draw or the hint: a broken
 * appliance answering at once can never make an agent spin. A quarter of the first step keeps
 * three quarters of that window for the spread.
 */
export const RETRY_FLOOR_MS = 250;

/**
 * Spread on top of an appliance's retry hint: up to half again. The agents the appliance
 * throttled at once got about the same hint; a wait of exactly the hint would bring them
 * back together.
 */
export const HINT_JITTER = 0.5;

/** The ceiling of the wait before retry number `attempt` (0 = first retry), in ms. */
export function backoffCeilingMs(attempt: number): number {
  return BACKOFF_SCHEDULE_MS[Math.min(Math.max(0, attempt), BACKOFF_SCHEDULE_MS.length - 1)] as number;
}

/**
 * The first step of the schedule whose ceiling is at least `ms` (the last step when none is).
 * Full-jitter waits average half their ceiling, so an agent that has been away `ms / 2` on its
 * own schedule is at about this step.
 */
export function stepReaching(ms: number): number {
  const step = BACKOFF_SCHEDULE_MS.findIndex((ceiling) => ceiling >= ms);
  return step === -1 ? BACKOFF_SCHEDULE_MS.length - 1 : step;
}

/** Full jitter (ms): uniform in [RETRY_FLOOR_MS, ceilingMs). */
export function fullJitterMs(ceilingMs: number, random: () => number): number {
  return RETRY_FLOOR_MS + Math.floor((Math.max(ceilingMs, RETRY_FLOOR_MS) - RETRY_FLOOR_MS) * unitDraw(random));
}

/**
 * The wait (ms) after an appliance's retry hint (ms; common/retry-hint.ts, or a pending
 * Register's retry_after_secs): uniform in [hint, hint × (1 + HINT_JITTER)), never under
 * RETRY_FLOOR_MS, so a hint of 0 cannot make a busy loop.
 */
export function afterHintMs(hintMs: number, random: () => number): number {
  const base = Math.max(hintMs, RETRY_FLOOR_MS);
  return base + Math.floor(base * HINT_JITTER * unitDraw(random));
}

/** Counts consecutive failures; a healthy stream resets it. */
export class Backoff {
  private attempt = 0;
  /** A healthy stream just ended: the next wait is drawn under FIRST_WAIT_AFTER_HEALTHY_CEILING_MS. */
  private afterHealthy = false;
  private readonly random: () => number;

  /** @param random uniform in [0, 1) (Math.random; a seeded source in tests). */
  constructor(random: () => number) {
    this.random = random;
  }

  /**
   * The wait before the next retry (ms), advancing the schedule: full jitter under the
   * schedule's step, or with the appliance's retry hint (ms) afterHintMs instead — never less
   * than the hint, and not the schedule's first second, which would come back while still
   * throttled. The first retry after a healthy stream (reset) is drawn under
   * FIRST_WAIT_AFTER_HEALTHY_CEILING_MS (4 s) rather than the 1 s step; the failures after it
   * take the schedule's ceilings from its second step (2, 4, 8 … 60 s). The first retry of an
   * agent that never streamed (a fresh start) keeps the 1 s step.
   *
   * A hinted wait counts as time away: the schedule goes on from the step whose ceiling is at
   * least twice that wait (stepReaching), where the agent would be had it waited that long on
   * its own. Going on from the next short step instead, a fleet that waited out a stopping
   * appliance's hints would find it still down and retry together on the 1-4 s steps.
   */
  next(hintMs?: number): number {
    const afterHealthy = this.afterHealthy;
    this.afterHealthy = false;
    if (hintMs === undefined) {
      const ceiling = afterHealthy ? FIRST_WAIT_AFTER_HEALTHY_CEILING_MS : backoffCeilingMs(this.attempt);
      this.attempt += 1;
      return fullJitterMs(ceiling, this.random);
    }
    const delay = afterHintMs(hintMs, this.random);
    this.attempt = Math.max(this.attempt + 1, stepReaching(2 * delay));
    return delay;
  }

  /** The wait before polling again (ms) when the appliance holds the host pending for `hintMs`. */
  poll(hintMs: number): number {
    return afterHintMs(hintMs, this.random);
  }

  /** A healthy stream ended: the schedule starts over, its first wait spread over 4 s. */
  reset(): void {
    this.attempt = 0;
    this.afterHealthy = true;
  }
}
