/**
 * A host clock further than this from the appliance's (either way) is flagged: a warning in the
 * appliance's log (once per crossing) and `clock_offset_warning` in `hosts list`/`hosts show`,
 * and a warning in the agent's log when it registers. Nothing stops working at any offset (the
 * appliance alone judges freshness and expiry), but logs, certificates and schedules on that
 * host are off. Five minutes: NTP keeps honest clocks within milliseconds, and it is the window
 * the legacy (register/v1) Register still needs.
 */
export const CLOCK_OFFSET_WARN_SECS = 300;

/**
 * A host flagged past CLOCK_OFFSET_WARN_SECS is logged back within only once its offset is under
 * this (4 minutes): a clock hovering at the threshold (NTP slewing, a loaded link's latency) would
 * otherwise log a warning and a recovery on every heartbeat.
 */
export const CLOCK_OFFSET_CLEAR_SECS = 240;

/** Whether an offset (agent's clock minus the appliance's, ms) is past CLOCK_OFFSET_WARN_SECS. */
export function isClockOffsetHigh(offsetMs: number): boolean {
  return Math.abs(offsetMs) > CLOCK_OFFSET_WARN_SECS * 1000;
}

/**
 * An offset further than this (100 years, in ms) is no clock reading but garbage: a peer that
 * sends it gets no recorded offset, no warning and no offset in its ack. A reset RTC (1970) is
 * about 56 years off, so every real clock, however wrong, stays within it.
 */
export const MAX_PLAUSIBLE_CLOCK_OFFSET_MS = 100 * 365.25 * 24 * 3600 * 1000;

/** offsetMs (agent's clock minus the appliance's) when plausible, else null (no reading). */
export function plausibleClockOffsetMs(offsetMs: number): number | null {
  return Math.abs(offsetMs) <= MAX_PLAUSIBLE_CLOCK_OFFSET_MS ? offsetMs : null;
}
