import type { ScanStatus } from '../model/inventory.ts';

/**
 * The inventory scan lifecycle as a pure transition table, like the task lifecycle
 * (tasks/states.ts). A scan is created receiving by its chunk 0; every later move is one
 * conditional UPDATE in the store (WHERE status IN from), so a move that does not apply any
 * more (the scan completed meanwhile, another stream closed it) changes nothing and says so.
 * Only `last_chunk_stored` marks the host's packages the scan did not see as removed; no other
 * move ever does, and only a completed scan counts as the host's last inventory.
 */
export const SCAN_STATUSES = ['receiving', 'completed', 'failed', 'abandoned'] as const satisfies readonly ScanStatus[];

/**
 * - restarted: chunk 0 again for a scan not completed (the agent retries the whole scan).
 * - resumed: the next chunk in order arrived for an abandoned scan.
 * - last_chunk_stored: the chunk flagged is_last was stored: the scan completes in that chunk's transaction.
 * - refused: the appliance refused what the agent sent (out of order, invalid, host no longer active): final.
 * - over_limits: the scan went over HOST_INVENTORY_LIMITS: final, and what it added is deleted.
 * - cut_off: the stream ended or broke before the last chunk, or a chunk was not stored for a
 *   failure of ours (storage): the agent may resume or retry it.
 * - appliance_started: a scan still receiving at start-up was cut off by the last stop, or by the
 *   death of the instance that received it (cluster/service.ts lost-stream pass).
 * - went_quiet: no chunk for InventoryService's SCAN_QUIET_MS: whatever carried it is gone without
 *   a word (an instance that died and was started again before its lease ran out, a lost-stream
 *   pass cut off before it abandoned the scan). A stream still open resumes it with its next chunk.
 */
export const SCAN_EVENTS = ['restarted', 'resumed', 'last_chunk_stored', 'refused', 'over_limits', 'cut_off', 'appliance_started', 'went_quiet'] as const;
export type ScanEvent = (typeof SCAN_EVENTS)[number];

export const SCAN_TRANSITIONS: Readonly<Record<ScanEvent, { readonly to: ScanStatus; readonly from: readonly ScanStatus[] }>> = {
  restarted: { to: 'receiving', from: ['receiving', 'abandoned'] },
  resumed: { to: 'receiving', from: ['abandoned'] },
  last_chunk_stored: { to: 'completed', from: ['receiving'] },
  refused: { to: 'failed', from: ['receiving'] },
  over_limits: { to: 'failed', from: ['receiving', 'abandoned'] },
  cut_off: { to: 'abandoned', from: ['receiving'] },
  appliance_started: { to: 'abandoned', from: ['receiving'] },
  went_quiet: { to: 'abandoned', from: ['receiving'] },
};

/** The status an event moves a scan to, or undefined when the event does not apply in that status. */
export function nextScanStatus(status: ScanStatus, event: ScanEvent): ScanStatus | undefined {
  const { to, from } = SCAN_TRANSITIONS[event];
  return from.includes(status) ? to : undefined;
}

/** The events that close a scan the agent is no longer sending: what `InventoryService.closeScan` takes. */
export type ScanClosingEvent = Extract<ScanEvent, 'refused' | 'over_limits' | 'cut_off'>;
