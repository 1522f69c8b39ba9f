/**
 * bench:inventory — how many software packages per second the appliance's inventory
 * store upserts: BENCH_HOSTS hosts (default 1,000) × BENCH_PACKAGES packages (default
 * 2,000), a first scan then a rescan in which 2 % of each host's packages changed
 * (half removed, half new).
 *
 * What is measured: direct, in-process calls of InventoryService.acceptChunk (500
 * packages per chunk, one transaction each that reads the host and the organisation's
 * retention and calls SoftwareInventoryStore.addChunk, the last chunk completing the scan and
 * marking packages not seen as removed) on a temporary database file opened exactly as
 * the appliance opens it (WAL, synchronous=NORMAL). Chunk validation (parseChunk) is
 * timed separately over the same chunks. The name index (software_name_index) is
 * filled in batches after a scan's last chunk commits, so its cost is inside the figures; the
 * slowest chunk shows the pause one batch causes. Not measured: TLS, HTTP/2, protobuf decoding
 * and the gRPC handler — the appliance's wire path; the figure is the store's ceiling.
 *
 * BENCH_BACKEND=postgres runs the same on PostgreSQL: a private cluster started by the test helper
 * (test/helpers/postgres.ts: on loopback, fsync and synchronous_commit off as the test cluster runs),
 * so its figure is an upper bound for a durable server; the ≥ 100,000/s target is SQLite's.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseChunk } from '../../appliance/inventory/chunk.ts';
import { openPostgresStores, openStores, type Stores } from '../../appliance/store/index.ts';
import { sql } from 'kysely';
import { startPostgres, type PostgresCluster } from '../helpers/postgres.ts';
import type { PackageInput } from '../../appliance/model/inventory.ts';
import type { SoftwarePackage__Output } from '../../proto/gen/ctops/ingest/v1/SoftwarePackage.ts';
import { benchInventoryService, CHUNK, insertBenchHosts, packageList, scanHost } from './lib/inventory-scan.ts';
import { describeMachine } from './lib/machine.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';

const TARGET_PER_SEC = 100_000;


const progress = progressFor('bench:inventory');

interface Phase {
  packages: number;
  seconds: number;
  added: number;
  unchanged: number;
  removed: number;
  /** The slowest acceptChunk call: a last chunk that also ran a name-index batch. */
  maxChunkMs: number;
  /**
   * The process's CPU time (user + system, every thread: process.cpuUsage) during the phase, in ms.
   * Unlike the wall-clock rate it barely moves when other processes load the machine.
   */
  cpuMs: number;
}

async function main(): Promise<void> {
  const hosts = positiveIntegerEnv('BENCH_HOSTS', 1000);
  const perHost = positiveIntegerEnv('BENCH_PACKAGES', 2000);
  const changed = 2 * Math.max(1, Math.round(perHost * 0.01));
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-bench-inventory-'));
  const path = join(dir, 'appliance.db');
  const backend = process.env.BENCH_BACKEND === 'postgres' ? 'postgres' : 'sqlite';
  let cluster: PostgresCluster | undefined;
  let stores: Stores;
  let sqliteFile: ReturnType<typeof openStores> | undefined;
  if (backend === 'postgres') {
    cluster = await startPostgres();
    stores = await openPostgresStores(await cluster.createDatabase('bench_inventory'), { poolSize: 4 });
  } else {
    sqliteFile = openStores(path);
    stores = sqliteFile;
  }
  const inventory = benchInventoryService(stores);
  try {
    const hostIds = await insertBenchHosts(stores, hosts);
    // Every host runs the same base image; the rescan drops `changed/2` packages and adds `changed/2` new ones.
    const first = packageList(perHost, 0);
    const rescan = [...first.slice(changed / 2), ...packageList(changed / 2, 1_000_000)].slice(0, perHost);
    const scan = async (label: string, list: readonly PackageInput[]): Promise<Phase> => {
      const phase: Phase = { packages: 0, seconds: 0, added: 0, unchanged: 0, removed: 0, maxChunkMs: 0, cpuMs: 0 };
      const started = performance.now();
      const cpuStarted = process.cpuUsage();
      for (const [h, hostId] of hostIds.entries()) {
        const scanned = await scanHost(inventory, hostId, `${label}-${hostId}`, list);
        phase.packages += scanned.packages;
        phase.added += scanned.added;
        phase.unchanged += scanned.unchanged;
        phase.removed += scanned.removed;
        phase.maxChunkMs = Math.max(phase.maxChunkMs, scanned.maxChunkMs);
        if ((h + 1) % 250 === 0) progress(`${label}: ${h + 1}/${hosts} hosts`);
      }
      phase.seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpuStarted);
      phase.cpuMs = (cpu.user + cpu.system) / 1000;
      return phase;
    };
    const firstPhase = await scan('first', first);
    const rescanPhase = await scan('rescan', rescan);

    // Validation cost over the same wire-shaped chunks, for comparison.
    const wire: SoftwarePackage__Output[] = first.map((pkg) => ({ name: pkg.name, version: pkg.version, source: pkg.source, architecture: pkg.architecture, publisher: pkg.publisher, install_date_unix: pkg.installDate ?? 0 }));
    const validateRounds = Math.max(1, Math.floor(200_000 / perHost));
    const validateStarted = performance.now();
    for (let round = 0; round < validateRounds; round += 1) {
      for (let index = 0; index * CHUNK < wire.length; index += 1) {
        parseChunk({ agent_id: 'hst_x', scan_id: `validate-${round}`, task_id: '', chunk_index: index, packages: wire.slice(index * CHUNK, (index + 1) * CHUNK), is_last: false, skipped: [] }, 'hst_x');
      }
    }
    const validatePerSec = (validateRounds * wire.length) / ((performance.now() - validateStarted) / 1000);
    let dbMiB: number;
    if (sqliteFile) {
      sqliteFile.db.pragma('wal_checkpoint(TRUNCATE)');
      dbMiB = statSync(path).size / 1024 ** 2;
    } else {
      const { rows } = await sql<{ bytes: number }>`SELECT pg_database_size(current_database())::bigint AS bytes`.execute(stores.kysely);
      dbMiB = Number(rows[0]!.bytes) / 1024 ** 2;
    }

    const machine = describeMachine();
    const rate = (phase: Phase): number => phase.packages / phase.seconds;
    const fmt = (value: number): string => Math.round(value).toLocaleString('en-GB');
    const cpuPerThousand = (phase: Phase): string => `CPU ${((1000 * phase.cpuMs) / phase.packages).toFixed(2)} ms per 1,000 packages`;
    const met = (value: number): string => (backend === 'postgres' ? 'no target on PostgreSQL' : value >= TARGET_PER_SEC ? 'MET' : 'NOT MET');
    const target = (value: number): string => (backend === 'postgres' ? met(value) : `target ≥ ${fmt(TARGET_PER_SEC)}/s: ${met(value)}`);
    const env = [backend === 'postgres' ? 'BENCH_BACKEND=postgres' : '', hosts === 1000 ? '' : `BENCH_HOSTS=${hosts}`, perHost === 2000 ? '' : `BENCH_PACKAGES=${perHost}`].filter(Boolean);
    const lines = [
      `| | |`,
      `|---|---|`,
      `| Command | \`${[...env, 'npm run bench:inventory'].join(' ')}\` |`,
      `| Date | ${machine.date} |`,
      `| Machine | ${machine.cpus} CPUs (nproc), ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel} |`,
      `| Node | ${machine.node} |`,
      backend === 'sqlite'
        ? `| Measured | in-process InventoryService.acceptChunk (Kysely over better-sqlite3), ${CHUNK} packages per chunk and transaction, temp DB file (WAL, synchronous=NORMAL); no gRPC/TLS |`
        : `| Measured | in-process InventoryService.acceptChunk (Kysely over pg, pool of 4), ${CHUNK} packages per chunk and transaction, private PostgreSQL 15 on loopback with fsync and synchronous_commit off (an upper bound); no gRPC/TLS |`,
      `| Hosts × packages | ${fmt(hosts)} × ${fmt(perHost)} |`,
      `| First scan | ${fmt(firstPhase.packages)} packages in ${firstPhase.seconds.toFixed(1)} s = **${fmt(rate(firstPhase))} packages/s** (added ${fmt(firstPhase.added)}; slowest chunk ${firstPhase.maxChunkMs.toFixed(0)} ms; ${cpuPerThousand(firstPhase)}) — ${target(rate(firstPhase))} |`,
      `| Rescan, ${((100 * changed) / perHost).toFixed(0)} % changed | ${fmt(rescanPhase.packages)} packages in ${rescanPhase.seconds.toFixed(1)} s = **${fmt(rate(rescanPhase))} packages/s** (added ${fmt(rescanPhase.added)}, unchanged ${fmt(rescanPhase.unchanged)}, removed ${fmt(rescanPhase.removed)}; slowest chunk ${rescanPhase.maxChunkMs.toFixed(0)} ms; ${cpuPerThousand(rescanPhase)}) — ${met(rate(rescanPhase))} |`,
      `| Chunk validation (parseChunk) | ${fmt(validatePerSec)} packages/s |`,
      `| Database size after both scans | ${dbMiB.toFixed(0)} MiB |`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    const expectedRemoved = hosts * (changed / 2);
    if (firstPhase.added !== hosts * perHost || rescanPhase.removed !== expectedRemoved || rescanPhase.added !== expectedRemoved) {
      throw new Error(`wrong counts: first added ${firstPhase.added}, rescan added ${rescanPhase.added} removed ${rescanPhase.removed}; expected ${hosts * perHost}, ${expectedRemoved}, ${expectedRemoved}`);
    }
    // The target is SQLite's; PostgreSQL's run reports its figure.
    if (backend === 'sqlite') process.exitCode = rate(firstPhase) >= TARGET_PER_SEC && rate(rescanPhase) >= TARGET_PER_SEC ? 0 : 1;
  } finally {
    await stores.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
