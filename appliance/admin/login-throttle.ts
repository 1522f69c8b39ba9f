import { CtOpsError } from '../../common/errors.ts';

/** When failed admin logins lock an account or a source address, and for how long. */
export interface LoginThrottlePolicy {
  /** Failures of one username (known or not) before it is locked. */
  readonly accountFailures: number;
  /** Failures from one source address, over all usernames, before it is locked. */
  readonly sourceFailures: number;
  /** The first lock; each further failure doubles it, up to maxLockMs. */
  readonly firstLockMs: number;
  readonly maxLockMs: number;
  /** A key with no failure for this long starts again from zero. */
  readonly forgetAfterMs: number;
  /** The most keys kept (memory bound against many usernames or addresses); the stalest unlocked go first. */
  readonly maxTracked: number;
}

/**
 * After 5 failures an account is locked for 1 s, then 2, 4 … up to 15 minutes per further
 * failure: an online guesser gets a few attempts an hour, while an admin who mistyped waits
 * seconds. A source address gets more room (20) since several admins may share one (a NAT).
 */
export const DEFAULT_LOGIN_THROTTLE: LoginThrottlePolicy = {
  accountFailures: 5,
  sourceFailures: 20,
  firstLockMs: 1_000,
  maxLockMs: 15 * 60_000,
  forgetAfterMs: 24 * 3_600_000,
  maxTracked: 10_000,
};

interface Track {
  failures: number;
  lockedUntil: number;
  lastAttemptAt: number;
}

/** What one attempt left behind, for the audit line. */
export interface AttemptRecord {
  /** The failures counted for the account, this attempt included. */
  readonly accountFailures: number;
  /** When the account or source lock this attempt engaged ends (Unix ms), if it engaged one. */
  readonly lockedUntil: number | undefined;
}

/**
 * Per-account and per-source backoff for admin logins, in memory (a restart forgets it; an
 * attacker cannot restart the appliance). An attempt counts as a failure from the moment it
 * starts until its password is proven, so a flood of parallel attempts is locked after the
 * threshold too, instead of all passing the check while their hashes run.
 */
export class LoginThrottle {
  readonly #policy: LoginThrottlePolicy;
  readonly #tracks = new Map<string, Track>();

  constructor(policy: LoginThrottlePolicy = DEFAULT_LOGIN_THROTTLE) {
    this.#policy = policy;
  }

  /**
   * Starts an attempt: throws ERR_LOGIN_LOCKED (details.retry_after_secs) while the account or the
   * source is locked, without counting it; otherwise counts it as failed until succeeded() is called.
   */
  begin(username: string, source: string, now: number): AttemptRecord {
    const keys = [[`account:${username}`, this.#policy.accountFailures], [`source:${source}`, this.#policy.sourceFailures]] as const;
    // Checked before anything is recorded: a locked caller cannot grow the table either.
    const lockedUntil = Math.max(...keys.map(([key]) => this.#tracks.get(key)?.lockedUntil ?? 0));
    if (lockedUntil > now) {
      const retryAfterSecs = Math.ceil((lockedUntil - now) / 1000);
      throw new CtOpsError('ERR_LOGIN_LOCKED', `too many failed logins: try again in ${retryAfterSecs} s`, { retry_after_secs: retryAfterSecs });
    }
    this.#makeRoom(keys.filter(([key]) => !this.#tracks.has(key)).length, now);
    const tracks = keys.map(([key]) => this.#track(key, now));
    let engaged: number | undefined;
    keys.forEach(([, threshold], index) => {
      const track = tracks[index]!;
      track.failures += 1;
      track.lastAttemptAt = now;
      if (track.failures >= threshold) {
        track.lockedUntil = now + Math.min(this.#policy.firstLockMs * 2 ** (track.failures - threshold), this.#policy.maxLockMs);
        engaged = Math.max(engaged ?? 0, track.lockedUntil);
      }
    });
    return { accountFailures: tracks[0]!.failures, lockedUntil: engaged };
  }

  /** How many accounts and sources are tracked now (at most policy.maxTracked). */
  get size(): number {
    return this.#tracks.size;
  }

  /** The attempt proved its password: the account and the source start again from zero. */
  succeeded(username: string, source: string): void {
    this.#tracks.delete(`account:${username}`);
    this.#tracks.delete(`source:${source}`);
  }

  /**
   * Frees room for `needed` new keys by forgetting the least recently attempted keys whose lock is
   * over. A running lock is never forgotten, or fresh keys would flush `account:admin`'s lock; when
   * locks fill the table, the attempt is refused with ERR_LOGIN_LOCKED until the first lock ends.
   */
  #makeRoom(needed: number, now: number): void {
    const fits = (): boolean => this.#tracks.size + needed <= this.#policy.maxTracked;
    for (const [key, track] of this.#tracks) {
      if (fits()) return;
      if (track.lockedUntil <= now) this.#tracks.delete(key);
    }
    if (fits()) return;
    const firstUnlock = Math.min(...Array.from(this.#tracks.values(), (track) => track.lockedUntil));
    const retryAfterSecs = Math.max(1, Math.ceil((firstUnlock - now) / 1000));
    throw new CtOpsError('ERR_LOGIN_LOCKED', `too many failed logins from everywhere: try again in ${retryAfterSecs} s`, { retry_after_secs: retryAfterSecs });
  }

  #track(key: string, now: number): Track {
    const known = this.#tracks.get(key);
    this.#tracks.delete(key);
    const track = known && now - known.lastAttemptAt < this.#policy.forgetAfterMs ? known : { failures: 0, lockedUntil: 0, lastAttemptAt: now };
    // Re-inserted last, so the Map's order is least recently attempted first.
    this.#tracks.set(key, track);
    return track;
  }
}
