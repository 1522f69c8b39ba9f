import { CtOpsError } from '../../common/errors.ts';

/**
 * The Heartbeat calls of each host that have not ended yet. A call closed by us is not ended
 * while its peer does not read: grpc-js sends the status only after the buffered replies flush,
 * and until then the call still holds what Node read ahead for it (up to 16 decoded messages of
 * ≤ 1 MiB). Capping the count per host caps what one host's stuck calls can hold.
 * Memory: one entry per host with a call open.
 */
export class HostOpenCalls {
  readonly #open = new Map<string, number>();
  readonly #cap: number;
  readonly #retryAfterMs: number;

  /**
   * @param cap calls one host may have open at once.
   * @param retryAfterMs the hint (ms) given with a refusal.
   */
  constructor(cap: number, retryAfterMs: number) {
    this.#cap = cap;
    this.#retryAfterMs = retryAfterMs;
  }

  /**
   * Counts one more open call of `hostId`; returns the function that uncounts it (idempotent),
   * to be called when the call ends. Throws ERR_STREAM_RATE_LIMITED (details.retry_after_ms)
   * when the host already has `cap` calls open.
   */
  open(hostId: string): () => void {
    const open = this.#open.get(hostId) ?? 0;
    if (open >= this.#cap) {
      throw new CtOpsError('ERR_STREAM_RATE_LIMITED', `a host keeps at most ${this.#cap} heartbeat streams open; reconnect later`, {
        host_id: hostId,
        retry_after_ms: this.#retryAfterMs,
        reason: 'too_many_open_streams',
      });
    }
    this.#open.set(hostId, open + 1);
    let counted = true;
    return () => {
      if (!counted) return;
      counted = false;
      const left = (this.#open.get(hostId) ?? 1) - 1;
      if (left > 0) this.#open.set(hostId, left);
      else this.#open.delete(hostId);
    };
  }
}
