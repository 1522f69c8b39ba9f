import { CtOpsError } from '../../common/errors.ts';
import { unitDraw } from '../../common/random-unit.ts';

/**
 * The window (ms) from which the stopping appliance draws each stream's retry hint, uniformly.
 * An appliance restart takes a few seconds; an agent waits the hint plus up to half again, so a
 * fleet returns over about 1-15 s. Agents that cannot reach it yet go on with their own backoff.
 */
export const STOPPING_RETRY_AFTER_MS = { min: 1_000, max: 10_000 } as const;

/**
 * The error each live stream is closed with when the appliance stops: UNAVAILABLE
 * (ERR_INGEST_UNREACHABLE) with a retry hint (details.retry_after_ms, sent as the trailing
 * metadata retry-after-ms of common/retry-hint.ts) drawn for this stream from
 * STOPPING_RETRY_AFTER_MS. Every agent honours the hint — those released before their own
 * backoff was spread (issue 9 §2) too — so agents that lost the appliance together do not all
 * come back on the same schedule.
 *
 * @param random uniform in [0, 1) (Math.random; a seeded source in tests).
 */
export function stoppingError(random: () => number = Math.random): CtOpsError {
  const { min, max } = STOPPING_RETRY_AFTER_MS;
  const retryAfterMs = min + Math.floor((max - min) * unitDraw(random));
  return new CtOpsError('ERR_INGEST_UNREACHABLE', `the appliance is shutting down; reconnect in ${Math.ceil(retryAfterMs / 1000)} s or later`, { retry_after_ms: retryAfterMs });
}
