import { RateLimiterMemory } from 'rate-limiter-flexible';
import { CtOpsError, GrpcCode, type ErrorCode } from '../../common/errors.ts';

/**
 * Failed Registers one source may make in one window before it is throttled. Only failures
 * count, so a burst of honest enrolments from one address (1,000 agents behind a NAT in
 * bench:core) is never slowed; an honest agent fails a handful of times at most (a key
 * the appliance forgot, a clock off by minutes), and a batch of hosts behind one NAT
 * sharing a used-up token fails once each: tens, not a flood.
 */
export const REGISTER_FAILURES_PER_WINDOW = 50;
/** The window starts with a source's first failure; once it is used up the source waits for its end. */
export const REGISTER_FAILURE_WINDOW_SECS = 30;

/** Refusals caused by the request (bad input, credential, signature, replay), not by the appliance. */
const PEER_CAUSED: ReadonlySet<number> = new Set([GrpcCode.INVALID_ARGUMENT, GrpcCode.UNAUTHENTICATED, GrpcCode.PERMISSION_DENIED]);
/** Peer-caused refusals whose status (RESOURCE_EXHAUSTED) the throttle's own refusal shares. */
const PEER_CAUSED_CODES: ReadonlySet<ErrorCode> = new Set(['ERR_MESSAGE_TOO_LARGE']);

/**
 * Throttles sources (appliance/lib/peer-source.ts) whose Registers keep failing: after
 * REGISTER_FAILURES_PER_WINDOW failures in a window, every Register from the source is
 * answered ERR_REGISTER_THROTTLED before any work (no signature check, no query, no row)
 * until the window ends. Memory: one counter per source that failed in the last window.
 */
export class RegisterThrottle {
  readonly #failures = new RateLimiterMemory({ keyPrefix: 'register-failures', points: REGISTER_FAILURES_PER_WINDOW, duration: REGISTER_FAILURE_WINDOW_SECS });

  /** Resolves when `source` may register; rejects with ERR_REGISTER_THROTTLED (details.retry_after_ms, whole ms) otherwise. */
  async admit(source: string): Promise<void> {
    const used = await this.#failures.get(source);
    if (used === null || used.remainingPoints > 0) return;
    const retryAfterMs = Math.max(1, Math.ceil(used.msBeforeNext));
    throw new CtOpsError(
      'ERR_REGISTER_THROTTLED',
      `too many failed Register requests from this address; retry in ${Math.ceil(retryAfterMs / 1000)} s`,
      { retry_after_ms: retryAfterMs },
    );
  }

  /**
   * Counts a refused Register against its source (a message the strict deserializer refused
   * included: malformed, invalid UTF-8, too large), unless the appliance itself failed (internal,
   * storage) or it was throttled already.
   */
  async refused(source: string, error: unknown): Promise<void> {
    if (error instanceof CtOpsError && (PEER_CAUSED.has(error.grpcStatus) || PEER_CAUSED_CODES.has(error.code))) await this.#failures.penalty(source);
  }
}
