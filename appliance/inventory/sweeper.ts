/** When hosts are due for a scan; the pass that queues them is InventoryService.sweep. */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** The first retry after a failed scan; each further failure doubles it, up to the org's interval. */
export const FIRST_RETRY_MS = 5 * MINUTE;
/**
 * At most this many scans are queued per pass, most overdue first. Without a cap, an appliance
 * starting with 1,000 never-scanned hosts online asks all of them at once: every host runs its
 * package manager in the same minute and 2 million packages arrive together (bench:core showed the
 * queueing alone stalling the event loop for 0.3 s). With it, 1,000 hosts are covered in 10 minutes
 * and 144,000 scans a day stay possible.
 */
export const MAX_SCANS_PER_SWEEP = 100;

/** What the sweeper knows of one host's scans. */
export interface ScanHistory {
  /** When the last scan completed, or null if none ever did. */
  readonly lastSuccessAt: number | null;
  /** Scans that failed or timed out since then. */
  readonly failuresSince: number;
  readonly lastFailureAt: number | null;
}

/**
 * When the host's next scan is due: intervalHours after the last success (at once if it never
 * had one); after failures, 5 min, 10 min, 20 min ... after the last failure, never longer than
 * the interval, so a host whose collector is broken is not asked every minute.
 */
export function nextScanDueAt(history: ScanHistory, intervalHours: number): number {
  const intervalMs = intervalHours * HOUR;
  const regular = history.lastSuccessAt === null ? 0 : history.lastSuccessAt + intervalMs;
  if (history.failuresSince === 0 || history.lastFailureAt === null) return regular;
  const backoffMs = Math.min(intervalMs, FIRST_RETRY_MS * 2 ** Math.min(history.failuresSince - 1, 20));
  return Math.max(regular, history.lastFailureAt + backoffMs);
}
