/**
 * A host clock further than this from the appliance's (either way) is flagged: a warning in the
 * appliance's log (once per crossing) and `clock_offset_warning` in `hosts list`/`hosts show`,
 * and a warning in the agent's log when it registers. Nothing stops working at any offset (the
 * appliance alone judges freshness and expiry), but logs, certificates and schedules on that
 * host are off. Five minutes: NTP keeps honest clocks within milliseconds, and it is the window
 * the legacy (register/v1) Register still needs.
 */
export const CLOCK_OFFSET_WARN_SECS = 300;

/** Whether an offset (agent's clock minus the appliance's, ms) is past CLOCK_OFFSET_WARN_SECS. */
export function isClockOffsetHigh(offsetMs: number): boolean {
  return Math.abs(offsetMs) > CLOCK_OFFSET_WARN_SECS * 1000;
}
