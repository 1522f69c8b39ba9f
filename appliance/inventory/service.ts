import { setImmediate } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { credentialRefusal } from '../hosts/identity.ts';
import { describeHost, mayReceiveWork, mayStream } from '../hosts/status.ts';
import type { ChunkResult, HostPackageRecord, SoftwarePackageRecord, SoftwareScan } from '../model/inventory.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Host, Stores, TableStores, TransactionScope } from '../store/index.ts';
import { HOSTS_PER_STATEMENT, slices } from '../store/runs.ts';
import type { TaskService } from '../tasks/service.ts';
import type { ValidChunk } from './chunk.ts';
import { indexNameBatches, NAME_INDEX_BATCH } from './name-index.ts';
import type { ScanClosingEvent } from './scan-states.ts';
import { checkScanTask } from './scan-task.ts';
import { searchPackage, type PackageSearch } from './search.ts';
import { inventorySettings, removedRetentionDays, updateInventorySettings, type InventorySettings, type InventorySettingsPatch } from './settings.ts';
import { MAX_SCANS_PER_SWEEP, nextScanDueAt } from './sweeper.ts';

/**
 * How long a scan may receive no chunk before it is taken for abandoned (ms). An agent sends its
 * chunks back to back (500 packages each, the next once the last was stored): ten minutes is far
 * beyond a chunk's time on the slowest link, and a stream still open resumes its scan anyway.
 */
const SCAN_QUIET_MS = 10 * 60_000;
/** How often the scans that went quiet are looked for (ms): a cheap read of the open scans alone (migration 017). */
export const QUIET_SCAN_PASS_MS = 60_000;
/** Hosts the software sweeper judges per step: three statements each, each naming at most this many. */
const SWEEP_HOSTS_PER_STEP = 500;

const DAY_MS = 86_400_000;
/** Deleted hosts the inventory retention looks up per statement. */
const PURGE_HOSTS_PER_STEP = 100;
export interface InventoryServiceDeps {
  readonly stores: Stores;
  readonly presence: PresenceRegistry;
  readonly tasks: TaskService;
  readonly log: Logger;
}

/**
 * Owns the software inventory workflows: whether a host may report, accepting a chunk, closing a
 * scan the agent no longer sends (scan-states.ts), abandoning scans a stop cut off, the sweeper
 * pass that asks hosts for scans, package search, the per-host reads and the organisation's
 * inventory settings. Handlers (grpc/inventory-handler.ts, http/admin-inventory.ts) only translate.
 */
export class InventoryService {
  readonly #deps: InventoryServiceDeps;
  /** The name-index run under way, and the smallest batch asked for while it ran (indexNames). */
  #naming: Promise<number> | undefined;
  #namingAgain: number | undefined;

  constructor(deps: InventoryServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Whether the host may open an inventory stream with a credential issued at `issuedAtSecs` (JWT
   * iat): it may stream, the credential predates no key rotation, and no second machine uses its
   * key. Throws ERR_AGENT_NOT_ACTIVE, the credential's refusal (hosts/identity.ts) or
   * ERR_HOST_IDENTITY_CONFLICT. Every chunk asks again (acceptChunk): this only refuses early.
   */
  async checkMayReport(hostId: string, issuedAtSecs: number): Promise<void> {
    const host = await this.#deps.stores.hosts.get(hostId);
    if (!host || !mayStream(host)) throw notActive(hostId, host);
    const stale = credentialRefusal(host, issuedAtSecs);
    if (stale) throw stale;
    refuseUnlessMayReceiveWork(host);
  }

  /**
   * Stores one validated chunk of the host's scan in one transaction, which first reads the host
   * (its row held until commit: HostStore.getForShare) and asks hosts/status.ts whether it may still have inventory written: a stream opened before
   * the host was deleted, revoked or flagged stores nothing more (ERR_AGENT_NOT_ACTIVE,
   * ERR_HOST_IDENTITY_CONFLICT). `opensStream`: the stream's first chunk, whose task_id must name
   * one of the host's open inventory tasks (scan-task.ts). The last chunk completes the scan and
   * purges removed rows past the organisation's retention; after commit, the name index takes the
   * new rows in a batch once enough arrived. Throws what SoftwareInventoryStore.addChunk throws.
   */
  async acceptChunk(hostId: string, chunk: ValidChunk, options: { now: number; opensStream: boolean }): Promise<ChunkResult> {
    return this.#deps.stores.transact(async (tx) => {
      const host = await tx.hosts.getForShare(hostId);
      if (!host || !mayStream(host)) throw notActive(hostId, host);
      refuseUnlessMayReceiveWork(host);
      if (options.opensStream) await checkScanTask(tx, hostId, chunk.taskId);
      const { scanId, taskId, chunkIndex, packages, skipped, isLast } = chunk;
      // The retention applies when the scan completes: read then, in the same transaction.
      const removedRetentionMs = isLast ? (await removedRetentionDays(tx, host.orgId)) * DAY_MS : undefined;
      const result = await tx.softwareInventory.addChunk({ scanId, taskId, hostId, chunkIndex, packages, skipped, isLast, now: options.now, removedRetentionMs });
      if (isLast) tx.afterCommit(async () => void (await this.indexNames(NAME_INDEX_BATCH)));
      return result;
    });
  }

  /**
   * Closes a scan the agent no longer sends, as scan-states.ts says for `event` (refused and
   * over_limits: failed, over_limits deleting what the scan added; cut_off: abandoned, resumable).
   * Nothing is marked removed. False when the scan is unknown, another host's, or already closed.
   */
  async closeScan(hostId: string, scanId: string, event: ScanClosingEvent, errorCode: string, now: number): Promise<boolean> {
    const closed = await this.#deps.stores.transact((tx) => tx.softwareInventory.closeScan(scanId, hostId, event, errorCode, now));
    if (closed) this.#deps.log.info({ host_id: hostId, scan_id: scanId, event, code: errorCode }, 'inventory scan closed');
    return closed;
  }

  /** Marks every scan still receiving abandoned at start-up: the last stop cut them off. Returns how many. */
  async abandonOpenScans(now: number): Promise<number> {
    const abandoned = await this.#deps.stores.softwareInventory.abandonOpenScans(now);
    if (abandoned > 0) this.#deps.log.warn({ scans: abandoned }, 'inventory scans cut off by the last stop marked abandoned');
    return abandoned;
  }

  /** Marks abandoned, in the caller's transaction `tx`, the open scans of `hostIds`, whose instance died (PresenceService.lostWithInstance). */
  async abandonScansOfLostIn(tx: TransactionScope<TableStores>, now: number, hostIds: readonly string[]): Promise<void> {
    let abandoned = 0;
    for (const slice of slices(hostIds, HOSTS_PER_STATEMENT)) abandoned += await tx.softwareInventory.abandonOpenScans(now, slice);
    if (abandoned > 0) tx.afterCommit(() => this.#deps.log.warn({ scans: abandoned }, 'inventory scans of hosts whose instance died marked abandoned'));
  }

  /**
   * Marks abandoned the scans that received no chunk for SCAN_QUIET_MS before `now` (scan-states.ts
   * went_quiet): the open scans nothing else will close. Returns how many. Rejects with
   * ERR_STORAGE_* when the storage fails.
   */
  async abandonQuietScans(now: number): Promise<number> {
    const abandoned = await this.#deps.stores.softwareInventory.abandonQuietScans(now, now - SCAN_QUIET_MS);
    if (abandoned > 0) this.#deps.log.warn({ scans: abandoned, quiet_ms: SCAN_QUIET_MS }, 'inventory scans that received nothing for a while marked abandoned');
    return abandoned;
  }

  /**
   * The inventory retention's pass (hourly, serve.ts): the whole inventory of each host deleted more
   * than its organisation's removed_retention_days ago goes (SoftwareInventoryStore.purgeHost: package
   * rows, name index entries, scan records), one host per transaction. A deletion removes every
   * package from the host at once, so its rows are kept as long as any removed package. Without it, a
   * fleet that replaces machines keeps every retired machine's packages for good. Every instance may
   * run it: a host purged twice at once deletes nothing the second time. Ends after the host in hand
   * once `signal` is aborted (the appliance stopping; the next pass goes on). Returns the hosts purged;
   * rejects with ERR_STORAGE_* when the storage fails.
   */
  async purgeDeletedHosts(now: number, signal?: AbortSignal): Promise<number> {
    const { stores, log } = this.#deps;
    let hosts = 0;
    let packages = 0;
    purging: for (const orgId of await stores.softwareInventory.orgsWithDeletedHosts()) {
      const cutoff = now - (await removedRetentionDays(stores, orgId)) * DAY_MS;
      for (;;) {
        const due = await stores.softwareInventory.deletedHostsWithInventory(orgId, cutoff, PURGE_HOSTS_PER_STEP);
        for (const hostId of due) {
          if (signal?.aborted) break purging;
          packages += (await stores.transact((tx) => tx.softwareInventory.purgeHost(hostId))).packages;
          hosts += 1;
          // One host's rows per write: heartbeats and chunks get the database in between.
          await setImmediate();
        }
        if (due.length < PURGE_HOSTS_PER_STEP) break;
      }
    }
    if (hosts > 0) log.info({ hosts, packages }, 'inventory of deleted hosts purged');
    return hosts;
  }

  /**
   * Adds package names to the name index while at least `batchAtLeast` rows wait (1: all), in short
   * statements with the event loop free between them (name-index.ts indexNameBatches). One run at a
   * time per instance: a call while one runs gets that run, which then looks again for the smallest
   * batch asked meanwhile (ranges committed after it read its own). Resolves to the entries the run
   * added; rejects with ERR_STORAGE_* when the storage fails.
   */
  indexNames(batchAtLeast = 1): Promise<number> {
    if (this.#naming) {
      this.#namingAgain = Math.min(this.#namingAgain ?? batchAtLeast, batchAtLeast);
      return this.#naming;
    }
    this.#namingAgain = undefined;
    this.#naming = this.#indexNamesRun(batchAtLeast);
    return this.#naming;
  }

  async #indexNamesRun(batchAtLeast: number): Promise<number> {
    try {
      let added = 0;
      for (let atLeast = batchAtLeast; ; ) {
        added += await indexNameBatches(this.#deps.stores.softwareInventory, atLeast);
        // Checked and cleared with no await in between: a call that finds this run still going is always seen.
        if (this.#namingAgain === undefined) return added;
        atLeast = this.#namingAgain;
        this.#namingAgain = undefined;
      }
    } finally {
      this.#naming = undefined;
    }
  }

  /**
   * The SoftwareSweeper's pass: a software_inventory task for every online host whose next scan is
   * due (sweeper.ts nextScanDueAt), at most MAX_SCANS_PER_SWEEP, most overdue first. Only online
   * hosts: a task for an offline host would only wait and expire. A host that already has an
   * unfinished inventory task (an admin's rescan, say) gets no second one. Ends at its next step once
   * `signal` is aborted (the appliance stopping; the next pass goes on). Returns the task ids queued.
   */
  async sweep(now: number, signal?: AbortSignal): Promise<string[]> {
    const { stores, presence, tasks, log } = this.#deps;
    const intervals = new Map<string, number>();
    const due: { hostId: string; orgId: string; dueAt: number }[] = [];
    const streaming = presence.streamingIds();
    for (let start = 0; start < streaming.length; start += SWEEP_HOSTS_PER_STEP) {
      // Between steps the event loop serves heartbeats: a pass over a large fleet is never one long stall.
      if (start > 0) await setImmediate();
      if (signal?.aborted) return [];
      const hosts = (await stores.hosts.getMany(streaming.slice(start, start + SWEEP_HOSTS_PER_STEP))).filter(mayStream);
      const lastSuccess = await stores.softwareInventory.lastInventoryAtEach(hosts.map((host) => host.id));
      const failures = await stores.tasks.failuresSince('software_inventory', new Map(hosts.map((host) => [host.id, lastSuccess.get(host.id) ?? 0])));
      for (const host of hosts) {
        let intervalHours = intervals.get(host.orgId);
        if (intervalHours === undefined) {
          intervalHours = (await inventorySettings(stores, host.orgId)).intervalHours;
          intervals.set(host.orgId, intervalHours);
        }
        const failed = failures.get(host.id);
        const dueAt = nextScanDueAt({ lastSuccessAt: lastSuccess.get(host.id) ?? null, failuresSince: failed?.count ?? 0, lastFailureAt: failed?.lastAt ?? null }, intervalHours);
        if (dueAt <= now) due.push({ hostId: host.id, orgId: host.orgId, dueAt });
      }
    }
    due.sort((a, b) => a.dueAt - b.dueAt);
    const queued: string[] = [];
    for (const [index, { hostId, orgId }] of due.entries()) {
      if (queued.length >= MAX_SCANS_PER_SWEEP) break;
      // One task's transaction and send at a time, heartbeats served between them: a hundred back to
      // back held the event loop for over 100 ms (issue 14).
      if (index > 0) await setImmediate();
      if (signal?.aborted) break;
      // Sent at once to its online agent (TaskService.create).
      const { task, created } = await tasks.create(orgId, { type: 'software_inventory', hostId, by: 'software-sweeper' }, now);
      if (!created) continue;
      queued.push(task.id);
    }
    if (queued.length > 0) log.info({ tasks: queued.length, due: due.length }, 'software sweeper queued inventory scans');
    return queued;
  }

  /** The organisation's hosts that have (had) a package: search.ts. */
  search(orgId: string, search: PackageSearch): Promise<HostPackageRecord[]> {
    return searchPackage(this.#deps.stores, orgId, search);
  }

  /** The host's packages (SoftwareInventoryStore.packages); the caller checked the host is the admin's. */
  packages(hostId: string, options: { liveOnly: boolean; page: { limit: number; offset: number } }): Promise<SoftwarePackageRecord[]> {
    return this.#deps.stores.softwareInventory.packages(hostId, options);
  }

  /** The host's scans, newest first, at most `limit`; the caller checked the host is the admin's. */
  scans(hostId: string, limit: number): Promise<SoftwareScan[]> {
    return this.#deps.stores.softwareInventory.scans(hostId, limit);
  }

  async settings(orgId: string): Promise<InventorySettings> {
    return inventorySettings(this.#deps.stores, orgId);
  }

  updateSettings(orgId: string, patch: InventorySettingsPatch): Promise<InventorySettings> {
    return updateInventorySettings(this.#deps.stores, orgId, patch);
  }
}

function notActive(hostId: string, host: Host | undefined): CtOpsError {
  return new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the host is ${describeHost(host)}; only active hosts may report inventory`, { host_id: hostId });
}

function refuseUnlessMayReceiveWork(host: Host): void {
  // Two machines use this key: either one's packages would overwrite the other's until an admin resolves it.
  if (!mayReceiveWork(host)) {
    throw new CtOpsError('ERR_HOST_IDENTITY_CONFLICT', 'another machine is using this host identity; inventory is held until an admin resolves it (hosts resolve)', { host_id: host.id });
  }
}
