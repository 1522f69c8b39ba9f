import type { Logger } from 'pino';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Stores } from '../store/index.ts';
import { createTask } from '../tasks/create.ts';
import type { TaskDispatcher } from '../tasks/dispatcher.ts';
import { inventorySettings } from './settings.ts';

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

export interface InventorySweepDeps {
  readonly stores: Stores;
  readonly presence: PresenceRegistry;
  readonly tasks: TaskDispatcher;
  readonly log: Logger;
}

/**
 * The SoftwareSweeper's pass: a software_inventory task for every online host whose next scan is
 * due. Only online hosts: a task for an offline host would only wait and expire. A host that
 * already has an unfinished inventory task (an admin's rescan, say) gets no second one.
 */
export async function sweepInventory(deps: InventorySweepDeps, now: number): Promise<string[]> {
  const { stores, presence, tasks, log } = deps;
  const intervals = new Map<string, number>();
  const due: { hostId: string; orgId: string; dueAt: number }[] = [];
  for (const hostId of presence.streamingIds()) {
    const host = await stores.hosts.get(hostId);
    if (!host || host.approval !== 'active' || host.deletedAt !== null) continue;
    let intervalHours = intervals.get(host.orgId);
    if (intervalHours === undefined) {
      intervalHours = (await inventorySettings(stores, host.orgId)).intervalHours;
      intervals.set(host.orgId, intervalHours);
    }
    const lastSuccessAt = stores.softwareInventory.lastInventoryAt(hostId);
    const failures = stores.tasks.failuresSince(hostId, 'software_inventory', lastSuccessAt ?? 0);
    const dueAt = nextScanDueAt({ lastSuccessAt, failuresSince: failures.count, lastFailureAt: failures.lastAt }, intervalHours);
    if (dueAt <= now) due.push({ hostId, orgId: host.orgId, dueAt });
  }
  due.sort((a, b) => a.dueAt - b.dueAt);
  const queued: string[] = [];
  for (const { hostId, orgId } of due) {
    if (queued.length >= MAX_SCANS_PER_SWEEP) break;
    const { task, created } = await createTask(stores, orgId, { type: 'software_inventory', hostId, by: 'software-sweeper' }, now);
    if (!created) continue;
    queued.push(task.id);
    await tasks.dispatch(hostId);
  }
  if (queued.length > 0) log.info({ tasks: queued.length, due: due.length }, 'software sweeper queued inventory scans');
  return queued;
}
