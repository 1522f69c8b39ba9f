/**
 * bench:inventory-fleet — the software inventory at fleet scale (issue 14): BENCH_HOSTS hosts (default
 * 20,000) each deliver a first scan of BENCH_PACKAGES packages (default 2,000) into one SQLite database,
 * then the real appliance serves that database and the console pages that read inventory are timed.
 *
 * 1. Fill: a fresh data directory's database opened with the store's own code (openStores, as `serve`
 *    opens it: WAL, synchronous=NORMAL), approved hosts written as enrolment leaves them, then each
 *    host's first scan delivered chunk by chunk (500 packages) through InventoryService.acceptChunk,
 *    the service call the gRPC inventory handler makes per chunk (one transaction: the host's check,
 *    the upsert, the last chunk completing the scan; the name index filled in batches after commit).
 *    Each host has the fleet's common packages and 10 of its own, so a search finds a name on every host
 *    and a name on one. Not through gRPC: 20,000 agents each holding a TLS connection pass this
 *    container's 20,000 open files per process and the shared machine's 10,000-agent bound, and the wire
 *    (TLS, HTTP/2, protobuf, the handler) is the same per chunk at any table size; it is the store's
 *    growth this bench looks at. Reported: packages/s overall and per twentieth of the fleet (rows so far,
 *    the process's CPU per 1,000 packages, the slowest chunk), so a rate that falls as the table grows
 *    shows; the database's size after a checkpoint.
 * 2. Pages: the appliance (dist/, so build first) serves the directory; the bench logs in as the first
 *    admin and loads each page that reads inventory over HTTPS (one kept-alive connection), 3 warm-ups
 *    then 20 loads, reading Server-Timing app;dur (the appliance's own time) and the wall time.
 *
 * BENCH_HOST_IDS=random gives the hosts random ids, as enrolment made them before decisions.md 156, whose
 * scattered name-index writes made the fill slow down as the table grew.
 *
 * Target (issue 14): the first scans at the bench:inventory rate (≥ 100,000 packages/s) and every page's
 * p99 server time under 300 ms; exits 1 when either is missed. BENCH_KEEP=1 keeps the data directory.
 */
import { statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { HOST_PACKAGES_PAGE } from '../../appliance/console/pages/host.tsx';
import { openStores } from '../../appliance/store/index.ts';
import { memoryMiB } from '../../loadtest/lib/proc.ts';
import { TestAppliance } from '../helpers/appliance.ts';
import { endConsoleRun, firstAdminClient, LOADS, measurePage, ms, WARM_UPS, writeJsonLine, type ConsoleClient, type PageFigures } from './lib/console-client.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';
import { benchInventoryService, insertBenchHosts, packageList, scanHost } from './lib/inventory-scan.ts';
import { describeMachine } from './lib/machine.ts';
import { packageDatabaseDir } from './lib/database-dir.ts';

const RATE_TARGET_PER_SEC = 100_000;
const PAGE_TARGET_MS = 300;
/** Packages of each host's list that no other host has. */
const OWN_PACKAGES = 10;
/** Windows of the fill whose rate is reported. */
const WINDOWS = 20;
const PASSWORD = 'bench inventory-fleet passphrase';
const progress = progressFor('bench:inventory-fleet');
const fmt = (value: number): string => Math.round(value).toLocaleString('en-GB');

interface Window {
  /** Hosts scanned and package rows in the table at the window's end. */
  hosts: number;
  rows: number;
  seconds: number;
  packagesPerSec: number;
  /** The process's CPU (user + system) per 1,000 packages, in ms: what other processes' load inflates least. */
  cpuMsPerThousand: number;
  maxChunkMs: number;
}

interface Fill {
  packages: number;
  added: number;
  seconds: number;
  cpuMsPerThousand: number;
  windows: Window[];
  dbBytes: number;
  /** A host in the middle of the fill, a name every host has, and a name only that host has. */
  hostId: string;
  commonName: string;
  ownName: string;
}

/** Writes the fleet's hosts and their first scans into a fresh database at `path`. */
async function fill(path: string, hosts: number, perHost: number, idKind: 'time-ordered' | 'random'): Promise<Fill> {
  const stores = openStores(path);
  try {
    const inventory = benchInventoryService(stores);
    const hostIds = await insertBenchHosts(stores, hosts, idKind);
    const own = Math.min(OWN_PACKAGES, perHost - 1);
    const common = packageList(perHost - own, 0);
    const ownList = (h: number) => packageList(own, 10_000_000 + h * own);
    const windowHosts = Math.max(1, Math.ceil(hosts / WINDOWS));
    const windows: Window[] = [];
    let packages = 0;
    let added = 0;
    let windowPackages = 0;
    let windowMaxChunkMs = 0;
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    let windowStarted = started;
    let windowCpu = process.cpuUsage();
    for (const [h, hostId] of hostIds.entries()) {
      const scanned = await scanHost(inventory, hostId, `first-${hostId}`, [...common, ...ownList(h)]);
      packages += scanned.packages;
      added += scanned.added;
      windowPackages += scanned.packages;
      windowMaxChunkMs = Math.max(windowMaxChunkMs, scanned.maxChunkMs);
      if ((h + 1) % windowHosts === 0 || h + 1 === hosts) {
        const now = performance.now();
        const cpu = process.cpuUsage(windowCpu);
        const seconds = (now - windowStarted) / 1000;
        windows.push({ hosts: h + 1, rows: added, seconds, packagesPerSec: windowPackages / seconds, cpuMsPerThousand: (cpu.user + cpu.system) / windowPackages, maxChunkMs: windowMaxChunkMs });
        progress(`${fmt(h + 1)}/${fmt(hosts)} hosts, ${fmt(added)} rows: ${fmt(windowPackages / seconds)} packages/s, CPU ${((cpu.user + cpu.system) / windowPackages).toFixed(1)} ms per 1,000, slowest chunk ${windowMaxChunkMs.toFixed(0)} ms`);
        windowStarted = now;
        windowCpu = process.cpuUsage();
        windowPackages = 0;
        windowMaxChunkMs = 0;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuStarted);
    stores.db.pragma('wal_checkpoint(TRUNCATE)');
    const middle = Math.floor(hosts / 2);
    return {
      packages, added, seconds, cpuMsPerThousand: (cpu.user + cpu.system) / packages, windows, dbBytes: statSync(path).size,
      hostId: hostIds[middle]!, commonName: common[0]!.name, ownName: ownList(middle)[0]!.name,
    };
  } finally {
    await stores.close();
  }
}

async function main(): Promise<void> {
  const hosts = positiveIntegerEnv('BENCH_HOSTS', 20_000);
  const perHost = positiveIntegerEnv('BENCH_PACKAGES', 2_000);
  if (perHost < 2) throw new Error('BENCH_PACKAGES: at least 2 (common packages and one of each host\'s own)');
  const idKind = process.env.BENCH_HOST_IDS === 'random' ? 'random' : 'time-ordered';
  const keep = process.env.BENCH_KEEP === '1';
  const { dir, estimatedBytes: estimated, freeBytes } = packageDatabaseDir('ct-ops-bench-inventory-fleet-', hosts, perHost);
  let appliance: TestAppliance | undefined;
  let client: ConsoleClient | undefined;
  try {
    progress(`filling ${fmt(hosts)} hosts × ${fmt(perHost)} packages in ${dir} (about ${(estimated / 1024 ** 3).toFixed(1)} GiB of ${(freeBytes / 1024 ** 3).toFixed(1)} GiB free)`);
    const loadAtFill = loadavg()[0]!;
    const fleet = await fill(join(dir, 'appliance.db'), hosts, perHost, idKind);
    progress(`filled in ${fleet.seconds.toFixed(1)} s: ${fmt(fleet.packages / fleet.seconds)} packages/s, database ${(fleet.dbBytes / 1024 ** 2).toFixed(0)} MiB`);

    const startedAt = performance.now();
    appliance = await TestAppliance.start({ dataDir: dir, sans: ['127.0.0.1'], env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });
    const startSeconds = (performance.now() - startedAt) / 1000;
    const pid = appliance.process.child.pid!;
    client = await firstAdminClient(appliance, PASSWORD);

    const host = `/console/hosts/${fleet.hostId}`;
    const lastPackagesPage = Math.ceil(perHost / HOST_PACKAGES_PAGE);
    // Around the common name's version (1.0.0-0ubuntu1), so every host matches and the filter and the rendering both scale.
    const [low, high] = ['1.0', '1.1'];
    const pages = [
      { label: 'overview', path: '/console/' },
      { label: 'hosts, sorted by hostname (default)', path: '/console/hosts' },
      { label: `host page (software page 1 of ${lastPackagesPage})`, path: host },
      { label: 'host page, removed shown', path: `${host}?removed=1` },
      { label: `host page, software page ${lastPackagesPage}`, path: `${host}?removed=0&page=${lastPackagesPage}` },
      { label: `software search, a name on every host`, path: `/console/software?name=${encodeURIComponent(fleet.commonName)}` },
      { label: `software search, every host, versions ${low}–${high}`, path: `/console/software?name=${encodeURIComponent(fleet.commonName)}&min_version=${low}&max_version=${high}` },
      { label: 'software search, a name on one host', path: `/console/software?name=${encodeURIComponent(fleet.ownName)}` },
      { label: 'software search as CSV, every host', path: `/console/software.csv?name=${encodeURIComponent(fleet.commonName)}` },
    ];
    const loadBefore = loadavg()[0]!;
    const figures: PageFigures[] = [];
    for (const page of pages) {
      figures.push(await measurePage(client, pid, page.label, page.path));
      const { serverMs } = figures.at(-1)!;
      progress(`${page.label}: server p50 ${ms(serverMs.p50)} / p99 ${ms(serverMs.p99)} ms`);
    }
    const loadAfter = loadavg()[0]!;
    const rssMiB = memoryMiB(pid, 'VmRSS');
    const peakRssMiB = memoryMiB(pid, 'VmHWM');

    const rate = fleet.packages / fleet.seconds;
    const slow = figures.filter((page) => page.serverMs.p99 >= PAGE_TARGET_MS);
    const machine = describeMachine();
    const env = [hosts === 20_000 ? '' : `BENCH_HOSTS=${hosts}`, perHost === 2_000 ? '' : `BENCH_PACKAGES=${perHost}`, idKind === 'random' ? 'BENCH_HOST_IDS=random' : ''].filter(Boolean);
    const [firstWindow, lastWindow] = [fleet.windows[0]!, fleet.windows.at(-1)!];
    const lines = [
      `Command: \`${[...env, 'npm run bench:inventory-fleet'].join(' ')}\``,
      '',
      `- Date: ${machine.date}`,
      `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
      `- Machine load (1-minute load average) at the fill's start / the pages' start / end: ${loadAtFill.toFixed(1)} / ${loadBefore.toFixed(1)} / ${loadAfter.toFixed(1)} on ${machine.cpus} CPUs`,
      `- Fleet: ${fmt(hosts)} hosts × ${fmt(perHost)} packages (${fmt(perHost - Math.min(OWN_PACKAGES, perHost - 1))} common, the rest each host's own), ${idKind} host ids, scanned in enrolment order`,
      `- First scans: ${fmt(fleet.packages)} packages in ${fleet.seconds.toFixed(1)} s = **${fmt(rate)} packages/s** (added ${fmt(fleet.added)}; CPU ${fleet.cpuMsPerThousand.toFixed(1)} ms per 1,000 packages) — target ≥ ${fmt(RATE_TARGET_PER_SEC)}/s: ${rate >= RATE_TARGET_PER_SEC ? 'MET' : 'NOT MET'}`,
      `- First twentieth / last twentieth: ${fmt(firstWindow.packagesPerSec)} / ${fmt(lastWindow.packagesPerSec)} packages/s, CPU ${firstWindow.cpuMsPerThousand.toFixed(1)} / ${lastWindow.cpuMsPerThousand.toFixed(1)} ms per 1,000 packages`,
      `- Database after a checkpoint: ${(fleet.dbBytes / 1024 ** 2).toFixed(0)} MiB, ${(fleet.dbBytes / fleet.added).toFixed(0)} bytes per package`,
      `- Appliance start on that database: ${startSeconds.toFixed(1)} s to listening; RSS after the pages ${rssMiB.toFixed(0)} MiB, peak ${peakRssMiB.toFixed(0)} MiB`,
      '',
      '| hosts scanned | package rows | packages/s | CPU per 1,000 packages | slowest chunk |',
      '| --- | --- | --- | --- | --- |',
      ...fleet.windows.map((w) => `| ${fmt(w.hosts)} | ${fmt(w.rows)} | ${fmt(w.packagesPerSec)} | ${w.cpuMsPerThousand.toFixed(1)} ms | ${w.maxChunkMs.toFixed(0)} ms |`),
      '',
      `| Page (${LOADS} loads after ${WARM_UPS} warm-ups) | server p50 / p95 / p99 (ms) | wall p50 / p99 (ms) | appliance CPU per load | size |`,
      '| --- | --- | --- | --- | --- |',
      ...figures.map((page) => `| ${page.label} | ${ms(page.serverMs.p50)} / ${ms(page.serverMs.p95)} / ${ms(page.serverMs.p99)} | ${ms(page.wallMs.p50)} / ${ms(page.wallMs.p99)} | ${ms(page.cpuMsPerLoad)} ms | ${(page.bytes / 1024).toFixed(0)} KiB |`),
      `| target: every page's p99 server time < ${PAGE_TARGET_MS} ms | ${slow.length === 0 ? 'MET' : `NOT MET (${slow.map((page) => page.label).join('; ')})`} | | | |`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    const json = { bench: 'inventory-fleet', date: machine.date, hosts, packagesPerHost: perHost, hostIds: idKind, packages: fleet.packages, fillSeconds: fleet.seconds, packagesPerSec: rate, cpuMsPerThousand: fleet.cpuMsPerThousand, windows: fleet.windows, dbBytes: fleet.dbBytes, startSeconds, loadAverage: [loadAtFill, loadBefore, loadAfter], rssMiB, peakRssMiB, pages: figures, met: rate >= RATE_TARGET_PER_SEC && slow.length === 0 };
    writeJsonLine(json);
    if (fleet.added !== hosts * perHost) throw new Error(`wrong count: the first scans added ${fleet.added} packages, expected ${hosts * perHost}`);
    process.exitCode = json.met ? 0 : 1;
  } finally {
    await endConsoleRun({ client, appliance, dir, keep, progress });
  }
}

await main();
