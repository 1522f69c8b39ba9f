import type { Logger } from 'pino';
import { SWEEP_LOCKS, type ClusterService } from '../cluster/service.ts';
import { failureFields } from '../health/storage-health.ts';
import type { AuditEvent, AuditEventInput, AuditFilter } from '../model/audit.ts';
import type { Stores } from '../store/index.ts';

/** The most events one page of a listing holds. */
export const AUDIT_PAGE_MAX = 500;

export interface AuditServiceDeps {
  stores: Stores;
  cluster: ClusterService;
  log: Logger;
  /** Events older than this are pruned (AuditService.prune). */
  retentionDays: number;
}

export interface AuditPage {
  /** Newest first. */
  events: AuditEvent[];
  /** The `beforeId` of the next page; undefined when this page holds the last matching event. */
  nextBeforeId: number | undefined;
}

/**
 * The audit log (issue 13): admin actions and security events recorded at the HTTP edge
 * (appliance/http/audit-hook.ts) for the API, the CLI (a client of the API) and the console alike;
 * listed by page, exported whole as a stream of pages, pruned by age.
 */
export class AuditService {
  readonly #deps: AuditServiceDeps;

  constructor(deps: AuditServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Stores one event. Never rejects: the request it describes has been answered already, so a
   * storage failure is logged (`audit event not recorded`, with the event's fields) and the event lost.
   */
  async record(event: AuditEventInput): Promise<void> {
    try {
      await this.#deps.stores.auditEvents.insert(event);
    } catch (error) {
      this.#deps.log.warn({ ...failureFields(error), event }, 'audit event not recorded');
    }
  }

  /** One page of at most `limit` (≤ AUDIT_PAGE_MAX) matching events, newest first, and the cursor of the next. */
  async list(orgId: string, filter: AuditFilter, limit: number): Promise<AuditPage> {
    const rows = await this.#deps.stores.auditEvents.page(orgId, filter, Math.min(limit, AUDIT_PAGE_MAX) + 1);
    const events = rows.slice(0, limit);
    return { events, nextBeforeId: rows.length > events.length ? events.at(-1)!.id : undefined };
  }

  /** Every matching event, newest first, read a page at a time (never the whole table at once). */
  async *export(orgId: string, filter: AuditFilter): AsyncGenerator<AuditEvent> {
    let beforeId = filter.beforeId;
    for (;;) {
      const page = await this.list(orgId, { ...filter, ...(beforeId !== undefined && { beforeId }) }, AUDIT_PAGE_MAX);
      yield* page.events;
      if (page.nextBeforeId === undefined) return;
      beforeId = page.nextBeforeId;
    }
  }

  /**
   * Deletes the events older than the retention, on one instance at a time (SWEEP_LOCKS.auditRetention);
   * resolves with how many were deleted (0 when another instance ran the pass).
   */
  async prune(now: number): Promise<number> {
    let deleted = 0;
    await this.#deps.cluster.exclusively(SWEEP_LOCKS.auditRetention, async () => {
      deleted = await this.#deps.stores.auditEvents.pruneBefore(now - this.#deps.retentionDays * 86_400_000);
    });
    if (deleted > 0) this.#deps.log.info({ deleted, retention_days: this.#deps.retentionDays }, 'audit events pruned');
    return deleted;
  }
}
