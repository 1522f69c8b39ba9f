import type { Host } from '../model/host.ts';
import type { HostFilter, HostPage, HostSort } from '../store/hosts.ts';
import type { TableStores, Task, TransactionScope } from '../store/index.ts';
import { decideHost, type HostDecision } from './decide.ts';
import { deleteHost, retireHost, type DeleteOutcome } from './delete.ts';
import type { HostDeps } from './deps.ts';
import { hostOfOrg } from './lookup.ts';
import { approveAsReplacement } from './replace.ts';
import { dismissIdentityConflict, resolveIdentity } from './resolve.ts';
import type { HostStatus } from './status.ts';

/**
 * Owns the admin's workflows on hosts: the lookup every handler uses ("the host of this
 * organisation, or ERR_HOST_NOT_FOUND"), approval decisions, deletion (at once, or by a remote
 * uninstall that finishes in the report's transaction), approval as a replacement, and resolving or
 * dismissing an identity conflict. Each writes in one transaction; closing streams, sending tasks
 * and logging run after it commits. Times are ms since the epoch.
 */
/** The newest tasks whose states make a host's change mark: as many as the console's host page lists (it reads this constant). */
export const HOST_CHANGE_TASKS = 20;

export class HostService {
  readonly #deps: HostDeps;

  constructor(deps: HostDeps) {
    this.#deps = deps;
  }

  /** The organisation's host; ERR_HOST_NOT_FOUND for an unknown id, another organisation's host, and (unless `includeDeleted`) a deleted one. */
  hostOfOrg(orgId: string, hostId: string, options: { includeDeleted?: boolean } = {}): Promise<Host> {
    return hostOfOrg(this.#deps.stores.hosts, orgId, hostId, options);
  }

  /** The organisation's hosts that are not deleted, oldest enrolment first. */
  list(orgId: string): Promise<Host[]> {
    return this.#deps.stores.hosts.list(orgId);
  }

  /**
   * A page of the organisation's hosts that are not deleted: those matching `filter` in `sort`'s order,
   * `limit` from `offset`, with which of them are online and how many match in all (HostStore.page).
   */
  page(orgId: string, filter: HostFilter, sort: HostSort, limit: number, offset: number): Promise<HostPage> {
    return this.#deps.stores.hosts.page(orgId, filter, sort, limit, offset, this.#deps.presence.leaseNow());
  }

  /** For each token, the host that enrolled with it last (HostStore.lastEnrolledWith). */
  lastEnrolledWith(orgId: string, tokenIds: readonly string[]): Promise<Map<string, { hostId: string; hostname: string; enrolledAt: number }>> {
    return this.#deps.stores.hosts.lastEnrolledWith(orgId, tokenIds);
  }

  /** How many of the organisation's hosts have each status now (HostStore.statusCounts). */
  statusCounts(orgId: string): Promise<Map<HostStatus, number>> {
    return this.#deps.stores.hosts.statusCounts(orgId, this.#deps.presence.leaseNow());
  }

  /** A text that changes when what an admin sees of the hosts may have (HostStore.changeMark): the console's live updates poll it. */
  changeMark(orgId: string): Promise<string> {
    return this.#deps.stores.hosts.changeMark(orgId, this.#deps.presence.leaseNow());
  }

  /**
   * A text that changes when what the host page of `hostId` shows may have: its row (a heartbeat's
   * time and vitals, a decision, a deletion), its update's phase, its newest scan's progress, and its
   * newest tasks' states (the page lists that many, HOST_CHANGE_TASKS). A host of another organisation
   * or none reads as one constant text: the console's live updates poll it, and say nothing by it.
   */
  async hostChangeMark(orgId: string, hostId: string): Promise<string> {
    const { stores } = this.#deps;
    const host = await stores.hosts.get(hostId);
    if (host?.orgId !== orgId) return 'none';
    const [update, [scan], tasks] = await Promise.all([
      stores.hostUpdates.get(hostId),
      stores.softwareInventory.scans(hostId, 1),
      stores.tasks.list(orgId, { hostId, limit: HOST_CHANGE_TASKS }),
    ]);
    return JSON.stringify([host, update ?? null, scan ? [scan.id, scan.status, scan.updatedAt] : null, tasks.map((task) => [task.id, task.state])]);
  }

  decide(orgId: string, hostId: string, decision: HostDecision, by: string, now: number): Promise<Host> {
    return decideHost(this.#deps, orgId, hostId, decision, by, now);
  }

  delete(orgId: string, hostId: string, options: { uninstall: boolean }, by: string, now: number): Promise<DeleteOutcome> {
    return deleteHost(this.#deps, orgId, hostId, options, by, now);
  }

  approveAsReplacement(orgId: string, newId: string, oldId: string, by: string, now: number, force: boolean): Promise<Host> {
    return approveAsReplacement(this.#deps, orgId, newId, oldId, by, now, force);
  }

  resolveIdentity(orgId: string, hostId: string, keep: string, by: string, now: number): Promise<Host> {
    return resolveIdentity(this.#deps, orgId, hostId, keep, by, now);
  }

  dismissIdentityConflict(orgId: string, hostId: string, by: string, now: number): Promise<Host> {
    return dismissIdentityConflict(this.#deps, orgId, hostId, by, now);
  }

  /**
   * What the host's record does when one of its tasks finished through its agent's report, in the
   * report's transaction `tx`: a succeeded uninstall deletes the host (its stream closes after commit).
   */
  async taskFinished(tx: TransactionScope<TableStores>, task: Task): Promise<void> {
    if (task.type === 'agent_uninstall' && task.state === 'succeeded') {
      await retireHost(this.#deps, tx, task.hostId, task.finishedAt ?? Date.now(), task.createdBy, 'host deleted after remote uninstall');
    }
  }
}
