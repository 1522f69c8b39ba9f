import { CtOpsError } from '../../common/errors.ts';
import { describeSkipped, NORMALISE_REASONS, SkipTally, type SkippedPackages } from '../../common/inventory-records.ts';
import type { Statement } from 'better-sqlite3';
import { sqliteCode, type Db } from './database.ts';
import { storageFailure } from './storage-failure.ts';

/**
 * Rows of packages indexed by name in one batch. Large enough that one batch touches each
 * index page about once, small enough to take well under a second.
 */
const NAME_INDEX_BATCH = 50_000;
/**
 * Packages per upsert statement. One multi-row statement per 100 packages instead of one call per
 * package measured 1.5x faster (bench:inventory); 100 rows x 10 values stays far below SQLite's
 * limit on bound values.
 */
const UPSERT_ROWS = 100;

/**
 * What one host may keep, whatever its agent sends (issue 8, item 5: one host must not fill the
 * disk). A scan of more packages is refused and leaves nothing; live rows allow one full scan
 * replacing another (every package upgraded); removed rows beyond the cap go oldest first.
 * Worst case per host: 60,000 rows of at most ~1.4 KB of text each.
 */
export const HOST_INVENTORY_LIMITS = {
  packagesPerScan: 20_000,
  livePackages: 40_000,
  removedPackages: 20_000,
  /** Scan records kept per host, newest first (software_scans.seq); older ones go when a scan completes. */
  scans: 100,
} as const;

export type ScanStatus = 'receiving' | 'completed' | 'failed' | 'abandoned';

export interface SoftwareScan {
  seq: number;
  id: string;
  hostId: string;
  taskId: string;
  startedAt: number;
  updatedAt: number;
  completedAt: number | null;
  status: ScanStatus;
  chunks: number;
  packagesReceived: number;
  added: number;
  removed: number;
  unchanged: number;
  /** Packages received but not stored, by reason (common/inventory-records.ts); they count in packagesReceived. */
  skipped: SkippedPackages[];
  errorCode: string | null;
}

/** A package as validated from the wire; installDate is Unix seconds or null. */
export interface PackageInput {
  name: string;
  version: string;
  source: string;
  architecture: string;
  publisher: string;
  installDate: number | null;
}

export interface SoftwarePackageRecord extends PackageInput {
  hostId: string;
  firstSeen: number;
  lastSeen: number;
  isRemoved: boolean;
  removedAt: number | null;
}

/** A package record with the hostname of its host, as "which hosts have X" answers. */
export interface HostPackageRecord extends SoftwarePackageRecord {
  hostname: string;
}

export interface ChunkInput {
  scanId: string;
  hostId: string;
  chunkIndex: number;
  packages: readonly PackageInput[];
  /** The chunk's packages that cannot be stored, by reason: counted with the scan, not written. */
  skipped?: readonly SkippedPackages[];
  isLast: boolean;
  now: number;
  /** When the scan completes, the host's packages removed longer ago than this (ms) are deleted; absent: kept. */
  removedRetentionMs?: number;
}

export interface ChunkResult {
  /** Packages new to the host, or back after having been marked removed. */
  added: number;
  /** Packages the host already had. */
  unchanged: number;
  /** Repeats of a package already seen by this scan (same name, version, source, architecture). */
  duplicates: number;
  /** The scan after this chunk; completed when the chunk was the last. */
  scan: SoftwareScan;
}

interface ScanRow {
  seq: number;
  id: string;
  host_id: string;
  task_id: string;
  started_at: number;
  updated_at: number;
  completed_at: number | null;
  status: ScanStatus;
  chunks: number;
  packages_received: number;
  added: number;
  removed: number;
  unchanged: number;
  skipped: string;
  error_code: string | null;
}

interface PackageRow {
  host_id: string;
  name: string;
  version: string;
  source: string;
  architecture: string;
  publisher: string;
  install_date: number | null;
  first_seen: number;
  last_seen: number;
  is_removed: number;
  removed_at: number | null;
}

interface HostPackageRow extends PackageRow {
  hostname: string;
}

/**
 * Owns software_scans and software_packages. A scan is received chunk by chunk; each
 * chunk is one transaction. Packages are upserted by (host_id, name, version, source,
 * architecture) — multi-arch installations are separate rows (migration 008);
 * first_seen is written once. Only completing a scan (its last chunk) marks the host's
 * packages that scan did not see as removed; a scan that fails or is abandoned marks
 * nothing, and never counts as the host's last inventory.
 */
export class SoftwareInventoryStore {
  readonly #getScan;
  readonly #completedScanForTask;
  readonly #insertScan;
  readonly #restartScan;
  readonly #forgetAttempt;
  readonly #resumeScan;
  readonly #hostApproval;
  /** The upsert statement for a given number of rows (100, and the last short batch of a chunk). */
  readonly #upsertByRows = new Map<number, Statement<unknown[], UpsertedRow>>();
  readonly #upsertRows: (rows: number) => Statement<unknown[], UpsertedRow>;
  readonly #chunkDone;
  readonly #setSkipped;
  readonly #markRemoved;
  readonly #complete;
  readonly #close;
  readonly #packages;
  readonly #scans;
  readonly #hostsWithPackage;
  readonly #lastInventoryAt;
  readonly #addChunk;
  readonly #indexState;
  readonly #maxPackageId;
  readonly #indexRange;
  readonly #setIndexed;
  readonly #indexNames;

  readonly #abandonOpen;
  readonly #livePackages;
  readonly #purgeRemovedBefore;
  readonly #purgeRemovedBeyond;
  readonly #purgeScansBeyond;
  readonly #discardAdded;
  readonly #discard;

  constructor(db: Db) {
    this.#livePackages = db.prepare<[string], { live: number }>('SELECT count(*) AS live FROM software_packages WHERE host_id = ? AND is_removed = 0');
    this.#purgeRemovedBefore = db.prepare<[string, number]>('DELETE FROM software_packages WHERE host_id = ? AND is_removed = 1 AND removed_at < ?');
    this.#purgeScansBeyond = db.prepare<{ hostId: string; keep: number }>(
      'DELETE FROM software_scans WHERE host_id = @hostId AND seq NOT IN (SELECT seq FROM software_scans WHERE host_id = @hostId ORDER BY seq DESC LIMIT @keep)',
    );
    this.#purgeRemovedBeyond = db.prepare<[string, string, number]>(
      `DELETE FROM software_packages WHERE host_id = ? AND id IN (
         SELECT id FROM software_packages WHERE host_id = ? AND is_removed = 1 ORDER BY removed_at DESC, id DESC LIMIT -1 OFFSET ?)`,
    );
    // Rows this scan created (prior_scan NULL, first seen since it started); rows it brought back
    // from removed keep their history (first_seen is older) and stay.
    this.#discardAdded = db.prepare<[string, number, number]>(
      'DELETE FROM software_packages WHERE host_id = ? AND last_seen_scan = ? AND prior_scan IS NULL AND first_seen >= ?',
    );
    this.#discard = db.transaction((scanId: string, hostId: string, errorCode: string, now: number): boolean => {
      const scan = this.#getScan.get(scanId);
      if (!scan || scan.host_id !== hostId || scan.status === 'completed') return false;
      this.#close.run('failed', errorCode, now, scanId, hostId);
      this.#discardAdded.run(hostId, scan.seq, scan.started_at);
      return true;
    });
    this.#abandonOpen = db.prepare<[number]>(
      "UPDATE software_scans SET status = 'abandoned', error_code = 'ERR_INVENTORY_SCAN_INCOMPLETE', updated_at = ? WHERE status = 'receiving'",
    );
    this.#getScan = db.prepare<[string], ScanRow>('SELECT * FROM software_scans WHERE id = ?');
    this.#completedScanForTask = db.prepare<[string, string], ScanRow>(
      "SELECT * FROM software_scans WHERE host_id = ? AND task_id = ? AND status = 'completed' ORDER BY completed_at DESC LIMIT 1",
    );
    this.#insertScan = db.prepare<[string, string, string, number, number]>(
      `INSERT INTO software_scans (id, host_id, task_id, started_at, updated_at, status)
       VALUES (?, ?, ?, ?, ?, 'receiving')`,
    );
    // Starting again from chunk 0: every per-scan counter restarts, and the packages the earlier attempt
    // saw are handed back as that attempt found them (last_seen_scan: the scan before, or 0 for one it
    // added), so the attempt's packages count as added or unchanged again and only true repeats as duplicates.
    this.#restartScan = db.prepare<[number, number]>(
      "UPDATE software_scans SET status = 'receiving', chunks = 0, packages_received = 0, added = 0, unchanged = 0, skipped = '[]', error_code = NULL, updated_at = ? WHERE seq = ?",
    );
    this.#forgetAttempt = db.prepare<[string, number]>('UPDATE software_packages SET last_seen_scan = COALESCE(prior_scan, 0) WHERE host_id = ? AND last_seen_scan = ?');
    this.#resumeScan = db.prepare<[number, number]>("UPDATE software_scans SET status = 'receiving', error_code = NULL, updated_at = ? WHERE seq = ?");
    this.#hostApproval = db.prepare<[string], { approval: string }>('SELECT approval FROM hosts WHERE id = ?');
    this.#upsertRows = (rows: number) => {
      let statement = this.#upsertByRows.get(rows);
      if (!statement) {
        const values = Array.from({ length: rows }, () => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)').join(', ');
        statement = db.prepare<unknown[], UpsertedRow>(
          `INSERT INTO software_packages (host_id, name, version, source, architecture, publisher, install_date, first_seen, last_seen, last_seen_scan, prior_scan)
           VALUES ${values}
           ON CONFLICT (host_id, name, version, source, architecture) DO UPDATE SET
             publisher = excluded.publisher,
             install_date = excluded.install_date,
             last_seen = excluded.last_seen,
             prior_scan = CASE WHEN software_packages.is_removed = 1 OR software_packages.last_seen_scan = 0 THEN NULL ELSE software_packages.last_seen_scan END,
             last_seen_scan = excluded.last_seen_scan,
             is_removed = 0,
             removed_at = NULL
           WHERE software_packages.last_seen_scan <> excluded.last_seen_scan
           RETURNING prior_scan, name, version, source, architecture`,
        );
        this.#upsertByRows.set(rows, statement);
      }
      return statement;
    };
    this.#chunkDone = db.prepare<{ seq: number; chunks: number; received: number; added: number; unchanged: number; now: number }>(
      `UPDATE software_scans SET chunks = @chunks, packages_received = packages_received + @received,
              added = added + @added, unchanged = unchanged + @unchanged, updated_at = @now
       WHERE seq = @seq`,
    );
    this.#setSkipped = db.prepare<[string, number]>('UPDATE software_scans SET skipped = ? WHERE seq = ?');
    this.#markRemoved = db.prepare<[number, string, number]>(
      'UPDATE software_packages SET is_removed = 1, removed_at = ? WHERE host_id = ? AND is_removed = 0 AND last_seen_scan <> ?',
    );
    this.#complete = db.prepare<[number, number, number, number]>(
      "UPDATE software_scans SET status = 'completed', removed = ?, completed_at = ?, updated_at = ? WHERE seq = ?",
    );
    this.#close = db.prepare<[ScanStatus, string, number, string, string]>(
      "UPDATE software_scans SET status = ?, error_code = ?, updated_at = ? WHERE id = ? AND host_id = ? AND status = 'receiving'",
    );
    // One statement for live and all packages, whole or a page: LIMIT -1 is no limit. The
    // UNIQUE (host_id, name, version, source, architecture) index serves both the filter and the order.
    this.#packages = db.prepare<{ hostId: string; includeRemoved: number; limit: number; offset: number }, PackageRow>(
      `SELECT * FROM software_packages WHERE host_id = @hostId AND (@includeRemoved = 1 OR is_removed = 0)
       ORDER BY name, version, source, architecture LIMIT @limit OFFSET @offset`,
    );
    // Newest first; software_scans_host (host_id, started_at) plus the rowid (seq) gives this order.
    this.#scans = db.prepare<[string, number], ScanRow>('SELECT * FROM software_scans WHERE host_id = ? ORDER BY started_at DESC, seq DESC LIMIT ?');
    // The name index for rows indexed so far, plus the short unindexed tail above its mark.
    // The organisation filter and removed flag apply after the lookup; NULL org means any.
    // Deleted hosts are no longer part of the fleet: their history is read per host only.
    this.#hostsWithPackage = db.prepare<{ name: string; orgId: string | null; includeRemoved: number }, HostPackageRow>(
      `SELECT p.*, h.hostname FROM software_name_index AS i
         JOIN software_packages AS p ON p.host_id = i.host_id AND p.name = i.name
         JOIN hosts AS h ON h.id = p.host_id
       WHERE i.name = @name AND (@includeRemoved = 1 OR p.is_removed = 0) AND (@orgId IS NULL OR h.org_id = @orgId) AND h.deleted_at IS NULL
       UNION
       SELECT p.*, h.hostname FROM software_packages AS p JOIN hosts AS h ON h.id = p.host_id
       WHERE p.id > (SELECT indexed_through FROM software_name_index_state WHERE id = 1) AND p.name = @name
         AND (@includeRemoved = 1 OR p.is_removed = 0) AND (@orgId IS NULL OR h.org_id = @orgId) AND h.deleted_at IS NULL
       ORDER BY version, host_id`,
    );
    this.#indexState = db.prepare<[], { indexed_through: number }>('SELECT indexed_through FROM software_name_index_state WHERE id = 1');
    this.#maxPackageId = db.prepare<[], { max_id: number | null }>('SELECT max(id) AS max_id FROM software_packages');
    this.#indexRange = db.prepare<[number, number]>(
      'INSERT OR IGNORE INTO software_name_index (name, host_id) SELECT name, host_id FROM software_packages WHERE id > ? AND id <= ? ORDER BY name, host_id',
    );
    this.#setIndexed = db.prepare<[number]>('UPDATE software_name_index_state SET indexed_through = ? WHERE id = 1');
    this.#indexNames = db.transaction((batchAtLeast: number): number => {
      const from = this.#indexState.get()!.indexed_through;
      const to = this.#maxPackageId.get()?.max_id ?? 0;
      if (to - from < batchAtLeast || to <= from) return 0;
      const added = this.#indexRange.run(from, to).changes;
      this.#setIndexed.run(to);
      return added;
    });
    this.#lastInventoryAt = db.prepare<[string], { last_inventory_at: number | null }>('SELECT last_inventory_at FROM host_last_inventory WHERE host_id = ?');
    this.#addChunk = db.transaction((input: ChunkInput): ChunkResult => this.#addChunkInTransaction(input));
  }

  /**
   * Marks every scan still receiving as abandoned (nothing marked removed). Called at start-up,
   * when no stream can be delivering chunks: such scans were cut off by a crash or a stop.
   */
  abandonOpenScans(now: number): number {
    return this.#abandonOpen.run(now).changes;
  }

  /** The host's completed scan that the task asked for, if one arrived. */
  completedScanForTask(hostId: string, taskId: string): SoftwareScan | undefined {
    const row = this.#completedScanForTask.get(hostId, taskId);
    return row && toScan(row);
  }

  getScan(scanId: string): SoftwareScan | undefined {
    const row = this.#getScan.get(scanId);
    return row && toScan(row);
  }

  /**
   * Adds one chunk of a scan in one transaction, and completes the scan in the same
   * transaction when the chunk is the last. Chunk 0 starts the scan, or restarts a scan
   * of the same host that was not completed; chunk n > 0 continues it, in order.
   * `taskId` is recorded when the scan starts; it is not checked (no task model yet).
   */
  addChunk(input: ChunkInput & { taskId: string }): ChunkResult {
    const result = guard(() => this.#addChunk(input));
    // Index the names of new rows in bulk once enough arrived (after the chunk's own commit).
    if (input.isLast) this.indexNames(NAME_INDEX_BATCH);
    return result;
  }

  /**
   * Adds the names of rows not yet in software_name_index, in one sorted batch, when at
   * least `batchAtLeast` rows are waiting (1: all of them). Returns the entries added.
   * Lookups are exact either way; this only keeps the unindexed tail short.
   */
  indexNames(batchAtLeast = 1): number {
    return guard(() => this.#indexNames(batchAtLeast));
  }

  /**
   * Closes a scan that is still receiving without marking anything removed: `abandoned`
   * when the stream broke (it may be resumed), `failed` when it was refused. False when
   * the scan is unknown, another host's, or not receiving.
   */
  closeScan(scanId: string, hostId: string, status: 'abandoned' | 'failed', errorCode: string, now: number): boolean {
    return guard(() => this.#close.run(status, errorCode, now, scanId, hostId).changes === 1);
  }

  /**
   * Fails a scan that is not completed and deletes the packages it added (refused whole, e.g. over
   * the per-scan limit: nothing of it stays). False when the scan is unknown, another host's, or completed.
   */
  discardScan(scanId: string, hostId: string, errorCode: string, now: number): boolean {
    return guard(() => this.#discard(scanId, hostId, errorCode, now));
  }

  /**
   * The packages recorded for the host by name, version, source and architecture: removed ones included
   * unless `liveOnly`, all of them unless `limit` (then from `offset`).
   */
  packages(hostId: string, options: { liveOnly?: boolean; limit?: number; offset?: number } = {}): SoftwarePackageRecord[] {
    const query = { hostId, includeRemoved: options.liveOnly ? 0 : 1, limit: options.limit ?? -1, offset: options.offset ?? 0 };
    return this.#packages.all(query).map(toPackage);
  }

  /** The host's scans, newest first, at most `limit`. */
  scans(hostId: string, limit: number): SoftwareScan[] {
    return this.#scans.all(hostId, limit).map(toScan);
  }

  /**
   * The records of a package (exact name) across hosts not deleted, by version then host:
   * installed ones unless `includeRemoved`, of every organisation unless `orgId`.
   */
  hostsWithPackage(name: string, options: { orgId?: string; includeRemoved?: boolean } = {}): HostPackageRecord[] {
    return this.#hostsWithPackage
      .all({ name, orgId: options.orgId ?? null, includeRemoved: options.includeRemoved ? 1 : 0 })
      .map((row) => ({ ...toPackage(row), hostname: row.hostname }));
  }

  /** When the host's last completed scan completed; null when it has none. */
  lastInventoryAt(hostId: string): number | null {
    return this.#lastInventoryAt.get(hostId)?.last_inventory_at ?? null;
  }

  #addChunkInTransaction(input: ChunkInput & { taskId?: string }): ChunkResult {
    const { scanId, hostId, chunkIndex, now } = input;
    const approval = this.#hostApproval.get(hostId)?.approval;
    if (approval === undefined) throw new CtOpsError('ERR_HOST_NOT_FOUND', 'the host no longer exists', { host_id: hostId });
    if (approval !== 'active') throw new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the host is ${approval}; only active hosts may report inventory`, { host_id: hostId });
    let scan = this.#getScan.get(scanId);
    if (scan && scan.host_id !== hostId) {
      throw new CtOpsError('ERR_INVENTORY_SCAN_CONFLICT', 'the scan belongs to another host', { reason: 'scan_conflict', scan_id: scanId });
    }
    if (scan?.status === 'completed') {
      throw new CtOpsError('ERR_INVENTORY_SCAN_COMPLETED', 'the scan was already completed; a new scan needs a new scan_id', { reason: 'scan_completed', scan_id: scanId });
    }
    if (scan?.status === 'failed') {
      throw new CtOpsError('ERR_INVENTORY_SCAN_CLOSED', 'the scan failed; a new scan needs a new scan_id', { reason: 'scan_failed', scan_id: scanId });
    }
    if (chunkIndex === 0) {
      if (!scan) {
        this.#insertScan.run(scanId, hostId, input.taskId ?? '', now, now);
      } else {
        this.#restartScan.run(now, scan.seq);
        this.#forgetAttempt.run(hostId, scan.seq);
      }
      scan = this.#getScan.get(scanId)!;
    } else {
      if (!scan || scan.chunks !== chunkIndex) {
        throw new CtOpsError('ERR_INVENTORY_SCAN_OUT_OF_ORDER', `chunk ${chunkIndex} does not follow the chunks received (${scan?.chunks ?? 0})`, {
          reason: 'chunk_out_of_order', scan_id: scanId, chunk_index: chunkIndex, expected: scan?.chunks ?? 0,
        });
      }
      if (scan.status !== 'receiving') this.#resumeScan.run(now, scan.seq);
    }
    const skippedHere = [...(input.skipped ?? [])];
    // Packages skipped on receipt were received too: they count against the scan's limit like stored
    // ones. Not counted again: those stored changed (in packages already) and the host's own counts.
    const incoming = input.packages.length + skippedHere.filter(receivedNotStored).reduce((sum, entry) => sum + entry.count, 0);
    if (scan.packages_received + incoming > HOST_INVENTORY_LIMITS.packagesPerScan) {
      throw new CtOpsError('ERR_INVENTORY_SCAN_TOO_LARGE', `a scan reports at most ${HOST_INVENTORY_LIMITS.packagesPerScan} packages`, {
        reason: 'scan_too_large', scan_id: scanId, limit: HOST_INVENTORY_LIMITS.packagesPerScan,
      });
    }
    let added = 0;
    let unchanged = 0;
    let duplicates = 0;
    let duplicateExample: string | undefined;
    for (let start = 0; start < input.packages.length; start += UPSERT_ROWS) {
      const batch = input.packages.slice(start, start + UPSERT_ROWS);
      const values: unknown[] = [];
      for (const pkg of batch) values.push(hostId, pkg.name, pkg.version, pkg.source, pkg.architecture, pkg.publisher, pkg.installDate, now, now, scan.seq);
      // A package already seen by this scan (a duplicate, even within the batch) updates nothing and returns no row.
      const rows = this.#upsertRows(batch.length).all(...values);
      duplicates += batch.length - rows.length;
      if (rows.length < batch.length) duplicateExample ??= firstNotReturned(batch, rows);
      for (const row of rows) {
        if (row.prior_scan === null) added += 1;
        else unchanged += 1;
      }
    }
    // Checked after the upsert, inside the transaction (a refusal rolls the chunk back): only rows
    // the chunk newly made live count, so packages an abandoned scan left behind never lock the
    // host out of a scan that reports them again. Only scans never completed leave this many.
    if (this.#livePackages.get(hostId)!.live > HOST_INVENTORY_LIMITS.livePackages) {
      throw new CtOpsError('ERR_INVENTORY_SCAN_TOO_LARGE', `a host keeps at most ${HOST_INVENTORY_LIMITS.livePackages} installed packages`, {
        reason: 'host_inventory_full', scan_id: scanId, limit: HOST_INVENTORY_LIMITS.livePackages,
      });
    }
    this.#chunkDone.run({ seq: scan.seq, chunks: chunkIndex + 1, received: incoming, added, unchanged, now });
    if (duplicates > 0) skippedHere.push({ reason: 'duplicate', count: duplicates, example: duplicateExample ?? '' });
    if (skippedHere.length > 0) this.#setSkipped.run(JSON.stringify(new SkipTally().addAll(parseSkipped(scan.skipped)).addAll(skippedHere).list()), scan.seq);
    if (input.isLast) {
      const current = this.#getScan.get(scanId)!;
      // Nothing stored (no package, or every one skipped) would mark every package of the host removed.
      if (current.added + current.unchanged === 0) {
        const skipped = describeSkipped(parseSkipped(current.skipped));
        throw new CtOpsError('ERR_INVALID_ARGUMENT', `a scan with no storable packages is refused: it would mark every package of the host removed${skipped ? ` (skipped: ${skipped})` : ''}`, { reason: 'scan_empty', scan_id: scanId });
      }
      const removed = this.#markRemoved.run(now, hostId, scan.seq).changes;
      this.#complete.run(removed, now, now, scan.seq);
      if (input.removedRetentionMs !== undefined) this.#purgeRemovedBefore.run(hostId, now - input.removedRetentionMs);
      this.#purgeRemovedBeyond.run(hostId, hostId, HOST_INVENTORY_LIMITS.removedPackages);
      this.#purgeScansBeyond.run({ hostId, keep: HOST_INVENTORY_LIMITS.scans });
    }
    return { added, unchanged, duplicates, scan: toScan(this.#getScan.get(scanId)!) };
  }
}

/** Maps SQLite failures to catalogue codes at the store boundary; our own errors pass through. */
function guard<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof CtOpsError) throw error;
    // Failures of the storage itself leave raw: the store boundary (store/index.ts) maps them to
    // ERR_STORAGE_* and marks the appliance degraded, as for every other table.
    if (storageFailure(error) !== undefined) throw error;
    const code = sqliteCode(error);
    if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') throw new CtOpsError('ERR_HOST_NOT_FOUND', 'the host no longer exists', {}, { cause: error });
    throw new CtOpsError('ERR_DATABASE', 'the software inventory could not be written', { sqlite_code: code ?? null }, { cause: error });
  }
}

interface UpsertedRow {
  prior_scan: number | null;
  name: string;
  version: string;
  source: string;
  architecture: string;
}

const identity = (pkg: Pick<PackageInput, 'name' | 'version' | 'source' | 'architecture'>): string => JSON.stringify([pkg.name, pkg.version, pkg.source, pkg.architecture]);

/** The name of the first package of the batch the upsert returned no row for: a repeat of an identity the scan already had. */
function firstNotReturned(batch: readonly PackageInput[], rows: readonly UpsertedRow[]): string | undefined {
  const returned = new Map<string, number>();
  for (const row of rows) returned.set(identity(row), (returned.get(identity(row)) ?? 0) + 1);
  for (const pkg of batch) {
    const left = returned.get(identity(pkg)) ?? 0;
    if (left === 0) return pkg.name;
    returned.set(identity(pkg), left - 1);
  }
  return undefined;
}

/** A count of packages the appliance received and did not store (not one stored changed, a repeat or the host's own). */
function receivedNotStored(entry: SkippedPackages): boolean {
  return entry.on_host !== true && entry.reason !== 'duplicate' && !(NORMALISE_REASONS as readonly string[]).includes(entry.reason);
}

/** software_scans.skipped: JSON written by this store only (migration 008). */
function parseSkipped(json: string): SkippedPackages[] {
  return JSON.parse(json) as SkippedPackages[];
}

function toScan(row: ScanRow): SoftwareScan {
  return {
    seq: row.seq,
    id: row.id,
    hostId: row.host_id,
    taskId: row.task_id,
    startedAt: row.started_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    status: row.status,
    chunks: row.chunks,
    packagesReceived: row.packages_received,
    added: row.added,
    removed: row.removed,
    unchanged: row.unchanged,
    skipped: parseSkipped(row.skipped),
    errorCode: row.error_code,
  };
}

function toPackage(row: PackageRow): SoftwarePackageRecord {
  return {
    hostId: row.host_id,
    name: row.name,
    version: row.version,
    source: row.source,
    architecture: row.architecture,
    publisher: row.publisher,
    installDate: row.install_date,
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    isRemoved: row.is_removed === 1,
    removedAt: row.removed_at,
  };
}
