import type { DialectName } from './dialects.ts';
import { sql, type CompiledQuery, type Selectable, type Updateable } from 'kysely';
import { CtOpsError } from '../../common/errors.ts';
import { describeSkipped, NORMALISE_REASONS, SkipTally, type SkippedPackages } from '../../common/inventory-records.ts';
import { SCAN_TRANSITIONS, type ScanClosingEvent, type ScanEvent } from '../inventory/scan-states.ts';
import {
  HOST_INVENTORY_LIMITS,
  type ChunkInput,
  type ChunkResult,
  type HostPackageRecord,
  type PackageInput,
  type SoftwarePackageRecord,
  type SoftwareScan,
} from '../model/inventory.ts';
import { constraintViolation } from './constraint-violation.ts';
import { slices } from './runs.ts';
import { storageFailure } from './storage-failure.ts';
import type { SoftwarePackagesTable, SoftwareScansTable } from './schema.ts';
import type { Executor } from './unit-of-work.ts';

/**
 * Packages per upsert statement: a whole chunk (at most 500, appliance/inventory/chunk.ts) in one
 * statement. Kysely prepares every statement it runs, so fewer, larger statements are what keeps
 * bench:inventory fast; 1,000 rows x 10 values stays far below SQLite's 32,766 bound values and
 * PostgreSQL's 65,535.
 */
const UPSERT_ROWS = 1000;

/** One chunk's pending id range for the name index (software_name_pending_ranges). */
export interface NameRange {
  hostId: string;
  firstId: number;
  lastId: number;
}

/** One entry of the name index: the host has a package of that name. */
export interface NameEntry {
  name: string;
  hostId: string;
}

type ScanRow = Selectable<SoftwareScansTable>;
type PackageRow = Selectable<SoftwarePackagesTable>;
/**
 * What the upsert returns per row it wrote: the counts need prior_scan, a duplicate's example the
 * name, the name index's pending range the id and first_seen (fewer strings returned: measurably less
 * CPU per chunk).
 */
type UpsertedRow = Pick<PackageRow, 'prior_scan' | 'name' | 'id' | 'first_seen'>;

/** Pending ranges deleted per statement: three bound values each, far below either backend's limit. */
const RANGES_PER_STATEMENT = 500;

/** Names per statement when dropping name index entries: two bound values of SQL besides, far below either backend's limit. */
const NAMES_PER_STATEMENT = 500;

/** The values of one package row in the upsert, in its column order. */
const UPSERT_COLUMNS = 11;

/**
 * The upsert compiled by Kysely's builder once per dialect (its adapter) and row count: building and
 * compiling 5,000 values cost about a fifth of bench:inventory, and its SQL text never changes for a
 * row count. Only the row values, the parameters before the ON CONFLICT clause's own, differ.
 * Not compiledOncePerLength (compiled-query.ts): with 5,500 parameters, finding each value through its
 * placeholder cost 1.5–2× the CPU per package of this positional copy (bench:inventory, Dec 1).
 */
const compiledUpserts = new WeakMap<object, Map<number, CompiledQuery<UpsertedRow>>>();

/**
 * Owns software_scans, software_packages and the name index. A scan is received chunk by chunk;
 * each chunk is one transaction (stores.transact: addChunk and the other multi-statement methods
 * refuse to run outside one). Packages are upserted by (host_id, name, version, source,
 * architecture) — multi-arch installations are separate rows (migration 008); first_seen is written
 * once. A scan's status moves only as appliance/inventory/scan-states.ts allows, each move one
 * conditional UPDATE (WHERE status IN from). Only completing a scan (its last chunk) marks the
 * host's packages that scan did not see as removed; a scan that fails or is abandoned marks
 * nothing, and never counts as the host's last inventory. Whether the host may store inventory at
 * all is the caller's question (InventoryService, hosts/status.ts mayReceiveWork).
 */
export class SoftwareInventoryStore {
  readonly #db: Executor;
  readonly #dialect: DialectName;

  /** `dialect`: the name index's entries are written in the way each backend binds a list (addNameEntries). */
  constructor(executor: Executor, dialect: DialectName) {
    this.#db = executor;
    this.#dialect = dialect;
  }

  /**
   * Marks every scan still receiving as abandoned (nothing marked removed), or only those of
   * `hostIds`. Called at start-up when no other instance serves (no stream can be delivering chunks:
   * such scans were cut off by a crash or a stop), and for the hosts whose instance died.
   */
  async abandonOpenScans(now: number, hostIds?: readonly string[]): Promise<number> {
    const { to, from } = SCAN_TRANSITIONS.appliance_started;
    if (hostIds?.length === 0) return 0;
    let update = this.#db
      .updateTable('software_scans')
      .set({ status: to, error_code: 'ERR_INVENTORY_SCAN_INCOMPLETE', updated_at: now })
      .where('status', 'in', from);
    if (hostIds) update = update.where('host_id', 'in', hostIds);
    const result = await update.executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /**
   * Marks abandoned (scan-states.ts went_quiet, ERR_INVENTORY_SCAN_INCOMPLETE) the scans still
   * receiving whose last chunk arrived before `quietSince` (ms); returns how many. Reads the partial
   * index software_scans_receiving (migration 017), so a pass costs the open scans, not the history.
   */
  async abandonQuietScans(now: number, quietSince: number): Promise<number> {
    const { to, from } = SCAN_TRANSITIONS.went_quiet;
    const result = await this.#db
      .updateTable('software_scans')
      .set({ status: to, error_code: 'ERR_INVENTORY_SCAN_INCOMPLETE', updated_at: now })
      // The term the partial index is declared with, as a literal: SQLite's planner cannot match a bound value.
      .where((eb) => (from.length === 1 ? eb('status', '=', sql.lit(from[0]!)) : eb('status', 'in', from.map((status) => sql.lit(status)))))
      .where('updated_at', '<', quietSince)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /** The host's completed scan that the task asked for, if one arrived. */
  async completedScanForTask(hostId: string, taskId: string): Promise<SoftwareScan | undefined> {
    const row = await this.#db
      .selectFrom('software_scans')
      .selectAll()
      .where('host_id', '=', hostId)
      .where('task_id', '=', taskId)
      .where('status', '=', 'completed')
      .orderBy('completed_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row && toScan(row);
  }

  async getScan(scanId: string): Promise<SoftwareScan | undefined> {
    const row = await this.#scanRow(scanId);
    return row && toScan(row);
  }

  /**
   * Adds one chunk of a scan, and completes the scan when the chunk is the last; inside
   * stores.transact, so a refusal leaves nothing of the chunk. Chunk 0 starts the scan, or restarts
   * a scan of the same host that was not completed; chunk n > 0 continues it, in order. Throws
   * ERR_INVENTORY_SCAN_CONFLICT / _COMPLETED / _CLOSED / _OUT_OF_ORDER / _TOO_LARGE,
   * ERR_INVALID_ARGUMENT (reason scan_empty: a last chunk with nothing stored), ERR_HOST_NOT_FOUND
   * (the host row is gone), ERR_DATABASE for any other refusal of the database.
   */
  async addChunk(input: ChunkInput): Promise<ChunkResult> {
    this.#requireTransaction('addChunk');
    try {
      return await this.#addChunkInTransaction(input);
    } catch (error) {
      throw inventoryError(error);
    }
  }

  /**
   * An upper bound of the package rows waiting for the name index: the ids the pending ranges span
   * (PostgreSQL's ranges may span ids of other hosts' chunks and ids a conflict used up).
   */
  async pendingNameIds(): Promise<number> {
    const waiting = await this.#db
      .selectFrom('software_name_pending_ranges')
      .select((eb) => eb.fn.coalesce(eb.fn.sum<number>(sql<number>`last_id - first_id + 1`), eb.lit(0)).as('ids'))
      .executeTakeFirstOrThrow();
    return Number(waiting.ids);
  }

  /**
   * The name index's pending id ranges, oldest first: one per chunk that inserted rows, written in the
   * chunk's transaction, so a range is visible exactly when its rows are (decisions.md 128, 130). A
   * range is never written twice: package ids are never reused (AUTOINCREMENT, PostgreSQL identity).
   */
  async pendingNameRanges(): Promise<NameRange[]> {
    const rows = await this.#db.selectFrom('software_name_pending_ranges').select(['host_id', 'first_id', 'last_id']).orderBy('first_id').execute();
    return rows.map((row) => ({ hostId: row.host_id, firstId: Number(row.first_id), lastId: Number(row.last_id) }));
  }

  /**
   * The (name, host) pair of each package row in `range`, in no particular order (a name repeats
   * across a host's versions and architectures). Read by id alone (a primary-key range; with the host
   * as well SQLite would walk the host's whole key): on PostgreSQL a range may then also cover rows of
   * another host's chunk committed with ids in between, and every pair it reads is a real package's,
   * so indexing it early is harmless.
   */
  async namesInRange(range: NameRange): Promise<NameEntry[]> {
    const rows = await this.#db.selectFrom('software_packages').select(['name', 'host_id']).where('id', '>=', range.firstId).where('id', '<=', range.lastId).execute();
    return rows.map((row) => ({ name: row.name, hostId: row.host_id }));
  }

  /**
   * Writes `entries` into software_name_index in their order (the caller sorts them by name: fewer
   * index pages touched), one statement whatever their number (a JSON array on SQLite, two arrays on
   * PostgreSQL: a statement's text and bound values do not grow with them); entries already there are
   * ignored. Returns the entries added.
   */
  async addNameEntries(entries: readonly NameEntry[]): Promise<number> {
    if (entries.length === 0) return 0;
    const result =
      this.#dialect === 'postgres'
        ? await sql`
            INSERT INTO software_name_index (name, host_id)
            SELECT * FROM unnest(${entries.map((entry) => entry.name)}::text[], ${entries.map((entry) => entry.hostId)}::text[])
            ON CONFLICT (name, host_id) DO NOTHING`.execute(this.#db)
        : // The WHERE settles SQLite's parse of INSERT … SELECT … ON CONFLICT.
          await sql`
            INSERT INTO software_name_index (name, host_id)
            SELECT value ->> 0, value ->> 1 FROM json_each(${JSON.stringify(entries.map((entry) => [entry.name, entry.hostId]))}) WHERE true
            ON CONFLICT (name, host_id) DO NOTHING`.execute(this.#db);
    return Number(result.numAffectedRows ?? 0);
  }

  /**
   * Deletes exactly `ranges` from the name index's pending list, once their entries are written
   * (a range is never written twice: pendingNameRanges); a range committed since they were read stays.
   * RANGES_PER_STATEMENT at a time. Returns how many went (fewer when a concurrent run deleted some).
   */
  async dropNameRanges(ranges: readonly NameRange[]): Promise<number> {
    let dropped = 0;
    for (const slice of slices(ranges, RANGES_PER_STATEMENT)) {
      const result = await this.#db
        .deleteFrom('software_name_pending_ranges')
        .where((eb) => eb(eb.refTuple('host_id', 'first_id', 'last_id'), 'in', slice.map((range) => eb.tuple(range.hostId, range.firstId, range.lastId))))
        .executeTakeFirst();
      dropped += Number(result.numDeletedRows);
    }
    return dropped;
  }

  /**
   * Closes a scan the agent no longer sends (scan-states.ts: `refused` and `over_limits` → failed,
   * `cut_off` → abandoned) without marking anything removed; `over_limits` also deletes the
   * packages the scan added (refused whole: nothing of it stays). Inside stores.transact. False when
   * the scan is unknown, another host's, or in a status the event does not apply to.
   */
  async closeScan(scanId: string, hostId: string, event: ScanClosingEvent, errorCode: string, now: number): Promise<boolean> {
    this.#requireTransaction('closeScan');
    const scan = await this.#scanRow(scanId);
    if (!scan || scan.host_id !== hostId) return false;
    const moved = await this.#move(scan.seq, event, now, { error_code: errorCode });
    if (moved && event === 'over_limits') {
      // Rows this scan created (prior_scan NULL, first seen since it started); rows it brought back
      // from removed keep their history (first_seen is older) and stay.
      const deleted = await this.#db
        .deleteFrom('software_packages')
        .where('host_id', '=', hostId)
        .where('last_seen_scan', '=', scan.seq)
        .where('prior_scan', 'is', null)
        .where('first_seen', '>=', scan.started_at)
        .returning('name')
        .execute();
      await this.#forgetNames(hostId, deleted);
    }
    return moved;
  }

  /**
   * The packages recorded for the host by name, version, source and architecture: removed ones
   * included unless `liveOnly`, all of them unless `page`. The UNIQUE (host_id, name, version,
   * source, architecture) index serves both the filter and the order.
   */
  async packages(hostId: string, options: { liveOnly?: boolean; page?: { limit: number; offset: number } } = {}): Promise<SoftwarePackageRecord[]> {
    const { liveOnly = false, page } = options;
    const rows = await this.#db
      .selectFrom('software_packages')
      .selectAll()
      .where('host_id', '=', hostId)
      .$if(liveOnly, (query) => query.where('is_removed', '=', 0))
      .orderBy('name')
      .orderBy('version')
      .orderBy('source')
      .orderBy('architecture')
      .$if(page !== undefined, (query) => query.limit(page!.limit).offset(page!.offset))
      .execute();
    return rows.map(toPackage);
  }

  /** The host's scans, newest first, at most `limit`. */
  async scans(hostId: string, limit: number): Promise<SoftwareScan[]> {
    const rows = await this.#db.selectFrom('software_scans').selectAll().where('host_id', '=', hostId).orderBy('started_at', 'desc').orderBy('seq', 'desc').limit(limit).execute();
    return rows.map(toScan);
  }

  /**
   * The records of a package (exact name) across hosts not deleted, by version then host:
   * installed ones unless `includeRemoved`, of every organisation unless `orgId`. Reads the name
   * index for rows indexed so far plus the short tail of pending rows; deleted hosts are
   * no longer part of the fleet (their history is read per host only).
   */
  async hostsWithPackage(name: string, options: { orgId?: string; includeRemoved?: boolean } = {}): Promise<HostPackageRecord[]> {
    const { orgId, includeRemoved = false } = options;
    const indexed = this.#db
      .selectFrom('software_name_index as i')
      .innerJoin('software_packages as p', (join) => join.onRef('p.host_id', '=', 'i.host_id').onRef('p.name', '=', 'i.name'))
      .innerJoin('hosts as h', 'h.id', 'p.host_id')
      .selectAll('p')
      .select('h.hostname')
      .where('i.name', '=', name)
      .where('h.deleted_at', 'is', null)
      .$if(!includeRemoved, (query) => query.where('p.is_removed', '=', 0))
      .$if(orgId !== undefined, (query) => query.where('h.org_id', '=', orgId!));
    // A row may be both indexed and pending (a range also covers rows back after removal): UNION makes each package one result row.
    // Per range, the host's rows of that name by the packages' (host_id, name, …) key, then the range.
    const unindexed = this.#db
      .selectFrom('software_name_pending_ranges as r')
      .innerJoin('software_packages as p', (join) => join.onRef('p.host_id', '=', 'r.host_id').on((eb) => eb.between('p.id', eb.ref('r.first_id'), eb.ref('r.last_id'))))
      .innerJoin('hosts as h', 'h.id', 'p.host_id')
      .selectAll('p')
      .select('h.hostname')
      .where('p.name', '=', name)
      .where('h.deleted_at', 'is', null)
      .$if(!includeRemoved, (query) => query.where('p.is_removed', '=', 0))
      .$if(orgId !== undefined, (query) => query.where('h.org_id', '=', orgId!));
    const rows = await indexed.union(unindexed).orderBy('version').orderBy('host_id').execute();
    return rows.map((row) => ({ ...toPackage(row), hostname: row.hostname }));
  }

  /** The organisations that have deleted hosts (the inventory retention's pass goes through them one by one, each with its own retention). */
  async orgsWithDeletedHosts(): Promise<string[]> {
    const rows = await this.#db.selectFrom('hosts').select('org_id').distinct().where('deleted_at', 'is not', null).execute();
    return rows.map((row) => row.org_id);
  }

  /**
   * The organisation's hosts deleted before `cutoff` (ms) that still have inventory (package rows or
   * scan records), longest deleted first, at most `limit`: what the inventory retention purges.
   */
  async deletedHostsWithInventory(orgId: string, cutoff: number, limit: number): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('hosts as h')
      .select('h.id')
      .where('h.org_id', '=', orgId)
      .where('h.deleted_at', '<', cutoff)
      .where((eb) =>
        eb.or([
          eb.exists(eb.selectFrom('software_packages as p').select(eb.lit(1).as('one')).whereRef('p.host_id', '=', 'h.id')),
          eb.exists(eb.selectFrom('software_scans as s').select(eb.lit(1).as('one')).whereRef('s.host_id', '=', 'h.id')),
        ]),
      )
      .orderBy('h.deleted_at')
      .limit(limit)
      .execute();
    return rows.map((row) => row.id);
  }

  /**
   * Deletes the whole inventory of a (deleted) host: its package rows, their name index entries and
   * its scan records; inside stores.transact. The host row stays (its key stays retired). Returns
   * how many package rows and scan records went.
   */
  async purgeHost(hostId: string): Promise<{ packages: number; scans: number }> {
    this.#requireTransaction('purgeHost');
    const packages = await this.#db.deleteFrom('software_packages').where('host_id', '=', hostId).returning('name').execute();
    await this.#forgetNames(hostId, packages);
    const scans = await this.#db.deleteFrom('software_scans').where('host_id', '=', hostId).executeTakeFirst();
    return { packages: packages.length, scans: Number(scans.numDeletedRows) };
  }

  /** When the host's last completed scan completed; null when it has none. */
  async lastInventoryAt(hostId: string): Promise<number | null> {
    return (await this.lastInventoryAtEach([hostId])).get(hostId) ?? null;
  }

  /** When each of `hostIds` last completed a scan (ms since the epoch); hosts never scanned are absent. One statement: at most a few hundred ids. */
  async lastInventoryAtEach(hostIds: readonly string[]): Promise<Map<string, number>> {
    if (hostIds.length === 0) return new Map();
    const rows = await this.#db.selectFrom('host_last_inventory').select(['host_id', 'last_inventory_at']).where('host_id', 'in', hostIds).execute();
    return new Map(rows.flatMap((row) => (row.last_inventory_at === null ? [] : [[row.host_id, row.last_inventory_at] as const])));
  }

  #scanRow(scanId: string): Promise<ScanRow | undefined> {
    return this.#db.selectFrom('software_scans').selectAll().where('id', '=', scanId).executeTakeFirst();
  }

  /**
   * The scan a chunk is for, its row locked until the chunk's transaction ends on PostgreSQL (FOR
   * UPDATE): a pass abandoning it meanwhile (went_quiet, a dead instance's) waits and then finds it
   * moved on, or went first and the chunk resumes it — never a chunk completing a scan abandoned under
   * it. SQLite runs one transaction at a time.
   */
  #scanRowForChunk(scanId: string): Promise<ScanRow | undefined> {
    const query = this.#db.selectFrom('software_scans').selectAll().where('id', '=', scanId);
    return (this.#dialect === 'postgres' ? query.forUpdate() : query).executeTakeFirst();
  }

  /** One move of scan-states.ts: a conditional UPDATE; true when the scan was in a status the event applies to. */
  async #move(seq: number, event: ScanEvent, now: number, fields: Updateable<SoftwareScansTable> = {}): Promise<boolean> {
    const { to, from } = SCAN_TRANSITIONS[event];
    const result = await this.#db.updateTable('software_scans').set({ ...fields, status: to, updated_at: now }).where('seq', '=', seq).where('status', 'in', from).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  #requireTransaction(method: string): void {
    if (!this.#db.isTransaction) throw new CtOpsError('ERR_INTERNAL', `SoftwareInventoryStore.${method} runs inside stores.transact`, {});
  }

  async #addChunkInTransaction(input: ChunkInput): Promise<ChunkResult> {
    const { scanId, hostId, chunkIndex, now } = input;
    let scan = await this.#scanRowForChunk(scanId);
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
      scan = scan === undefined ? await this.#startScan(input) : await this.#restartScan(scan, now);
    } else {
      if (!scan || scan.chunks !== chunkIndex) throw outOfOrder(scanId, chunkIndex, scan?.chunks ?? 0);
      if (scan.status === 'abandoned') await this.#move(scan.seq, 'resumed', now, { error_code: null });
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
    const { unique, repeats } = withoutRepeats(input.packages);
    let added = 0;
    let unchanged = 0;
    let duplicates = repeats.length;
    let duplicateExample: string | undefined = repeats[0];
    let inserted: { first: number; last: number } | undefined;
    for (let start = 0; start < unique.length; start += UPSERT_ROWS) {
      const batch = unique.slice(start, start + UPSERT_ROWS);
      // A package an earlier chunk of this scan already stored updates nothing and returns no row.
      const rows = await this.#upsert(hostId, scan.seq, batch, now);
      duplicates += batch.length - rows.length;
      if (rows.length < batch.length) duplicateExample ??= firstNotReturned(batch, rows);
      for (const row of rows) {
        if (row.prior_scan === null) added += 1;
        else unchanged += 1;
        // A row this statement inserted is new to the host (prior_scan NULL) and first seen now (an
        // update keeps first_seen). A row back after removal, first seen in the same millisecond,
        // only widens the range: harmless, as an entry the index has is not added twice.
        if (row.prior_scan === null && row.first_seen === now) inserted = inserted === undefined ? { first: row.id, last: row.id } : { first: Math.min(inserted.first, row.id), last: Math.max(inserted.last, row.id) };
      }
    }
    // The name index learns the new rows from this range, visible exactly when they are (pendingNameRanges).
    if (inserted !== undefined) await this.#db.insertInto('software_name_pending_ranges').values({ host_id: hostId, first_id: inserted.first, last_id: inserted.last }).execute();
    // Checked after the upsert, inside the transaction (a refusal rolls the chunk back): only rows
    // the chunk newly made live count, so packages an abandoned scan left behind never lock the
    // host out of a scan that reports them again. Only scans never completed leave this many. A chunk
    // that made no row live (added 0) cannot cross the limit: every earlier chunk was held to it.
    if (added > 0 && (await this.#livePackages(hostId)) > HOST_INVENTORY_LIMITS.livePackages) {
      throw new CtOpsError('ERR_INVENTORY_SCAN_TOO_LARGE', `a host keeps at most ${HOST_INVENTORY_LIMITS.livePackages} installed packages`, {
        reason: 'host_inventory_full', scan_id: scanId, limit: HOST_INVENTORY_LIMITS.livePackages,
      });
    }
    if (duplicates > 0) skippedHere.push({ reason: 'duplicate', count: duplicates, example: duplicateExample ?? '' });
    const skipped = skippedHere.length > 0 ? JSON.stringify(new SkipTally().addAll(parseSkipped(scan.skipped)).addAll(skippedHere).list()) : scan.skipped;
    const counted = await this.#db
      .updateTable('software_scans')
      .set((eb) => ({
        chunks: chunkIndex + 1,
        packages_received: eb('packages_received', '+', incoming),
        added: eb('added', '+', added),
        unchanged: eb('unchanged', '+', unchanged),
        skipped,
        updated_at: now,
      }))
      .where('seq', '=', scan.seq)
      // The chunks counted when this chunk was checked: on PostgreSQL the same chunk delivered again at
      // once (an agent that failed over to another instance) passed the check too, and waits here for
      // the first delivery's commit, then updates nothing — refused, its upserts roll back.
      .where('chunks', '=', scan.chunks)
      .returningAll()
      .executeTakeFirst();
    if (counted === undefined) throw outOfOrder(scanId, chunkIndex, chunkIndex + 1);
    return { added, unchanged, duplicates, scan: toScan(input.isLast ? await this.#complete(input, counted) : counted) };
  }

  async #startScan(input: ChunkInput): Promise<ScanRow> {
    return this.#db
      .insertInto('software_scans')
      .values({ id: input.scanId, host_id: input.hostId, task_id: input.taskId, started_at: input.now, updated_at: input.now, status: 'receiving' })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /**
   * Starting again from chunk 0: every per-scan counter restarts, and the packages the earlier attempt
   * saw are handed back as that attempt found them (last_seen_scan: the scan before, or 0 for one it
   * added), so the attempt's packages count as added or unchanged again and only true repeats as duplicates.
   */
  async #restartScan(scan: ScanRow, now: number): Promise<ScanRow> {
    await this.#move(scan.seq, 'restarted', now, { chunks: 0, packages_received: 0, added: 0, unchanged: 0, skipped: '[]', error_code: null });
    await this.#db
      .updateTable('software_packages')
      .set((eb) => ({ last_seen_scan: eb.fn.coalesce('prior_scan', eb.lit(0)) }))
      .where('host_id', '=', scan.host_id)
      .where('last_seen_scan', '=', scan.seq)
      .execute();
    return (await this.#scanRow(scan.id))!;
  }

  /** One multi-row upsert of distinct packages; returns a row for each package not already seen by this scan. */
  async #upsert(hostId: string, seq: number, batch: readonly PackageInput[], now: number): Promise<UpsertedRow[]> {
    const { adapter } = this.#db.getExecutor();
    let byRows = compiledUpserts.get(adapter);
    if (byRows === undefined) compiledUpserts.set(adapter, (byRows = new Map()));
    const compiled = byRows.get(batch.length);
    if (compiled === undefined) {
      const first = this.#upsertQuery(hostId, seq, batch, now).compile();
      byRows.set(batch.length, first);
      return (await this.#db.executeQuery(first)).rows;
    }
    const values: unknown[] = [];
    for (const pkg of batch) values.push(hostId, pkg.name, pkg.version, pkg.source, pkg.architecture, pkg.publisher, pkg.installDate, now, now, seq, null);
    const parameters = [...values, ...compiled.parameters.slice(batch.length * UPSERT_COLUMNS)];
    return (await this.#db.executeQuery<UpsertedRow>({ ...compiled, parameters })).rows;
  }

  /** The upsert as the builder says it; the row values are in #upsert's order (UPSERT_COLUMNS per row). */
  #upsertQuery(hostId: string, seq: number, batch: readonly PackageInput[], now: number) {
    const rows = batch.map((pkg) => ({
      host_id: hostId,
      name: pkg.name,
      version: pkg.version,
      source: pkg.source,
      architecture: pkg.architecture,
      publisher: pkg.publisher,
      install_date: pkg.installDate,
      first_seen: now,
      last_seen: now,
      last_seen_scan: seq,
      prior_scan: null,
    }));
    return this.#db
      .insertInto('software_packages')
      .values(rows)
      .onConflict((conflict) =>
        conflict
          .columns(['host_id', 'name', 'version', 'source', 'architecture'])
          .doUpdateSet((eb) => ({
            publisher: eb.ref('excluded.publisher'),
            install_date: eb.ref('excluded.install_date'),
            last_seen: eb.ref('excluded.last_seen'),
            // The scan that saw the package before this one; NULL when it is new to the host again.
            prior_scan: eb
              .case()
              .when(eb.or([eb('software_packages.is_removed', '=', 1), eb('software_packages.last_seen_scan', '=', 0)]))
              .then(eb.lit(null))
              .else(eb.ref('software_packages.last_seen_scan'))
              .end(),
            last_seen_scan: eb.ref('excluded.last_seen_scan'),
            is_removed: 0,
            removed_at: null,
          }))
          .whereRef('software_packages.last_seen_scan', '<>', 'excluded.last_seen_scan'),
      )
      .returning(['prior_scan', 'name', 'id', 'first_seen']);
  }

  async #livePackages(hostId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('software_packages')
      .select((eb) => eb.fn.countAll().as('live'))
      .where('host_id', '=', hostId)
      .where('is_removed', '=', 0)
      .executeTakeFirstOrThrow();
    return Number(row.live);
  }

  /**
   * The last chunk's work on the scan as its chunks left it: refuse a scan that stored nothing, mark
   * what the scan did not see removed, complete it, then keep the host's rows within the retention and
   * HOST_INVENTORY_LIMITS. Returns the completed scan.
   */
  async #complete(input: ChunkInput, current: ScanRow): Promise<ScanRow> {
    const { scanId, hostId, now } = input;
    const { seq } = current;
    // Nothing stored (no package, or every one skipped) would mark every package of the host removed.
    if (current.added + current.unchanged === 0) {
      const skipped = describeSkipped(parseSkipped(current.skipped));
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `a scan with no storable packages is refused: it would mark every package of the host removed${skipped ? ` (skipped: ${skipped})` : ''}`, { reason: 'scan_empty', scan_id: scanId });
    }
    const marked = await this.#db
      .updateTable('software_packages')
      .set({ is_removed: 1, removed_at: now })
      .where('host_id', '=', hostId)
      .where('is_removed', '=', 0)
      .where('last_seen_scan', '<>', seq)
      .executeTakeFirst();
    // Chunk 0 or a resume set the scan receiving earlier in this transaction, which holds its row (#scanRowForChunk).
    if (!(await this.#move(seq, 'last_chunk_stored', now, { removed: Number(marked.numUpdatedRows), completed_at: now }))) {
      throw new CtOpsError('ERR_INTERNAL', 'the scan left receiving while its last chunk was stored; nothing of the chunk is kept', { scan_id: scanId });
    }
    if (input.removedRetentionMs !== undefined) {
      const purged = await this.#db
        .deleteFrom('software_packages')
        .where('host_id', '=', hostId)
        .where('is_removed', '=', 1)
        .where('removed_at', '<', now - input.removedRetentionMs)
        .returning('name')
        .execute();
      await this.#forgetNames(hostId, purged);
    }
    await this.#purgeRemovedBeyondCap(hostId);
    await this.#purgeScansBeyondCap(hostId);
    return (await this.#scanRow(scanId))!;
  }

  /** Removed rows beyond HOST_INVENTORY_LIMITS.removedPackages go, oldest removal first. */
  async #purgeRemovedBeyondCap(hostId: string): Promise<void> {
    const removed = this.#db.selectFrom('software_packages').where('host_id', '=', hostId).where('is_removed', '=', 1);
    // The newest removed row beyond the cap; it and every older one go. Removed rows always have a removed_at.
    const boundary = await removed.select(['removed_at', 'id']).orderBy('removed_at', 'desc').orderBy('id', 'desc').limit(1).offset(HOST_INVENTORY_LIMITS.removedPackages).executeTakeFirst();
    if (boundary === undefined) return;
    const removedAt = boundary.removed_at as number;
    const purged = await this.#db
      .deleteFrom('software_packages')
      .where('host_id', '=', hostId)
      .where('is_removed', '=', 1)
      .where((eb) => eb.or([eb('removed_at', '<', removedAt), eb.and([eb('removed_at', '=', removedAt), eb('id', '<=', boundary.id)])]))
      .returning('name')
      .execute();
    await this.#forgetNames(hostId, purged);
  }

  /**
   * Drops the name index's entries of `hostId` for the names of `deleted` (rows just deleted) that no
   * package row of the host carries any more (a version still installed keeps its name's entry).
   * Lookups join back to software_packages, so a dead entry is never a wrong answer, but without
   * this every name a host ever had stays in the index for good: it grows with the fleet's churn
   * (issue 14, a week compressed). Point deletes by the index's (name, host_id) key, a slice of names
   * per statement. An entry a name-index batch running meanwhile adds for a row deleted here
   * may stay; it is as harmless as before and goes with the host's inventory.
   */
  async #forgetNames(hostId: string, deleted: readonly Pick<PackageRow, 'name'>[]): Promise<void> {
    const names = [...new Set(deleted.map((row) => row.name))];
    for (const slice of slices(names, NAMES_PER_STATEMENT)) {
      await this.#db
        .deleteFrom('software_name_index')
        .where('host_id', '=', hostId)
        .where('name', 'in', slice)
        .where((eb) =>
          eb.not(eb.exists(eb.selectFrom('software_packages as p').select(eb.lit(1).as('one')).where('p.host_id', '=', hostId).whereRef('p.name', '=', 'software_name_index.name'))),
        )
        .execute();
    }
  }

  /** Scan records beyond HOST_INVENTORY_LIMITS.scans go, oldest (lowest seq) first, whatever their status. */
  async #purgeScansBeyondCap(hostId: string): Promise<void> {
    const boundary = await this.#db.selectFrom('software_scans').select('seq').where('host_id', '=', hostId).orderBy('seq', 'desc').limit(1).offset(HOST_INVENTORY_LIMITS.scans).executeTakeFirst();
    if (boundary === undefined) return;
    await this.#db.deleteFrom('software_scans').where('host_id', '=', hostId).where('seq', '<=', boundary.seq).execute();
  }
}

/**
 * Our own refusals pass; a failure of the storage itself leaves raw (the store boundary,
 * store/index.ts, maps it to ERR_STORAGE_* and marks the appliance degraded); a host row deleted
 * under the chunk is ERR_HOST_NOT_FOUND; anything else the database refused is ERR_DATABASE.
 */
function inventoryError(error: unknown): unknown {
  if (error instanceof CtOpsError || storageFailure(error) !== undefined) return error;
  const constraint = constraintViolation(error);
  if (constraint === 'foreign-key') return new CtOpsError('ERR_HOST_NOT_FOUND', 'the host no longer exists', {}, { cause: error });
  return new CtOpsError('ERR_DATABASE', 'the software inventory could not be written', { constraint: constraint ?? null }, { cause: error });
}

/** ERR_INVENTORY_SCAN_OUT_OF_ORDER: chunk `chunkIndex` of the scan when `expected` is the next one it takes. */
function outOfOrder(scanId: string, chunkIndex: number, expected: number): CtOpsError {
  return new CtOpsError('ERR_INVENTORY_SCAN_OUT_OF_ORDER', `chunk ${chunkIndex} does not follow the chunks received (${expected})`, {
    reason: 'chunk_out_of_order', scan_id: scanId, chunk_index: chunkIndex, expected,
  });
}

type PackageIdentity = Pick<PackageInput, 'name' | 'version' | 'source' | 'architecture'>;

/** The unique key of a package of a host. NUL cannot occur in stored text (refused on receipt; PostgreSQL text cannot hold it). */
const identity = (pkg: PackageIdentity): string => `${pkg.name}\u0000${pkg.version}\u0000${pkg.source}\u0000${pkg.architecture}`;

/**
 * The chunk's packages without repeats of an identity, and the names of the repeats. Repeats go
 * before the upsert: PostgreSQL refuses a statement whose ON CONFLICT would update one row twice.
 */
function withoutRepeats(packages: readonly PackageInput[]): { unique: PackageInput[]; repeats: string[] } {
  const seen = new Set<string>();
  const unique: PackageInput[] = [];
  const repeats: string[] = [];
  for (const pkg of packages) {
    const key = identity(pkg);
    if (seen.has(key)) repeats.push(pkg.name);
    else {
      seen.add(key);
      unique.push(pkg);
    }
  }
  return { unique, repeats };
}

/** The name of a package of the batch (distinct identities) the upsert returned no row for, the earliest such name in the batch. */
function firstNotReturned(batch: readonly PackageInput[], rows: readonly Pick<PackageRow, 'name'>[]): string | undefined {
  // By name only: the batch has one entry per identity, so the first name it holds more often than
  // the returned rows do is the name of an entry that was not written.
  const unmatched = new Map<string, number>();
  for (const row of rows) unmatched.set(row.name, (unmatched.get(row.name) ?? 0) + 1);
  for (const pkg of batch) {
    const left = unmatched.get(pkg.name) ?? 0;
    if (left === 0) return pkg.name;
    unmatched.set(pkg.name, left - 1);
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
