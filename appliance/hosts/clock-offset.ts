import type { Logger } from 'pino';
import { CLOCK_OFFSET_CLEAR_SECS, CLOCK_OFFSET_WARN_SECS, isClockOffsetHigh } from '../../common/clock-offset.ts';

/**
 * Watches one host's clock offset on its Heartbeat stream and logs each crossing, with
 * hysteresis: a warning when it goes past CLOCK_OFFSET_WARN_SECS, an info line when it is back
 * under CLOCK_OFFSET_CLEAR_SECS, nothing in between or while it stays on one side. It starts
 * from the offset recorded for the host (a reconnect is no crossing). The offset itself is stored with the heartbeat (VitalsWriter).
 */
export class HostClockWatch {
  readonly #hostId: string;
  readonly #log: Logger;
  #high: boolean;

  /** recordedOffsetMs: the host's stored clock_offset_ms (null before any). */
  constructor(hostId: string, recordedOffsetMs: number | null, log: Logger) {
    this.#hostId = hostId;
    this.#log = log;
    this.#high = recordedOffsetMs !== null && isClockOffsetHigh(recordedOffsetMs);
  }

  /** offsetMs: the agent's clock minus the appliance's when a heartbeat arrived. */
  observe(offsetMs: number): void {
    const high = this.#high ? Math.abs(offsetMs) >= CLOCK_OFFSET_CLEAR_SECS * 1000 : isClockOffsetHigh(offsetMs);
    if (high === this.#high) return;
    this.#high = high;
    const fields = { host_id: this.#hostId, clock_offset_secs: Math.round(offsetMs / 1000), threshold_secs: high ? CLOCK_OFFSET_WARN_SECS : CLOCK_OFFSET_CLEAR_SECS };
    if (high) this.#log.warn(fields, 'host clock offset above threshold');
    else this.#log.info(fields, 'host clock offset back within threshold');
  }
}
