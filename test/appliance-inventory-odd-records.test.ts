import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import protobuf from 'protobufjs';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import type { IngestServiceClient } from '../common/proto.ts';
import { PACKAGE_FIELD_LIMITS } from '../common/inventory-records.ts';
import { migrate, openDatabase } from '../appliance/store/database.ts';
import { openStores } from '../appliance/store/index.ts';
import { MIGRATIONS } from '../appliance/store/migrations/index.ts';
import type { SoftwareInventoryStore } from '../appliance/store/software-inventory.ts';
import { INGEST_PROTO_TEXT } from '../proto/gen/ingest-proto-text.ts';
import type { SoftwarePackage } from '../proto/gen/ctops/ingest/v1/SoftwarePackage.ts';
import type { TestAppliance } from './helpers/appliance.ts';
import { activeAgent, chunksOf, packages, submitScan, startInventoryAppliance } from './helpers/inventory.ts';
import { rawGrpcCall } from './helpers/raw-grpc.ts';
import { addChunk, closeScan } from './helpers/inventory-store.ts';

// Issue 9, §3: a whole scan of records real package managers produce goes through the real
// appliance over gRPC. Every storable record is stored (multi-arch twins as two rows); every other
// one is skipped and counted with the scan, by reason; none fails the scan.

const pkg = (name: string, version: string, architecture: string, extra: Partial<SoftwarePackage> = {}): SoftwarePackage => ({ name, version, architecture, publisher: '', source: 'dpkg', install_date_unix: 0, ...extra });

/** Storable records of every collector's platform, none of which the appliance stored before. */
const ODD_BUT_LEGAL: SoftwarePackage[] = [
  pkg('emptyver', '', 'all'),
  pkg('libc6', '2.36-9+deb12u4', 'amd64', { publisher: 'GNU Libc Maintainers' }),
  pkg('libc6', '2.36-9+deb12u4', 'i386', { publisher: 'GNU Libc Maintainers' }),
  pkg('g++-12', '1:12.2.0~rc1+dfsg-14', 'arm64'),
  pkg('libstdc++6', '12.2.0-14', 'armhf'),
  pkg('gpg-pubkey', '3228467c-613798eb', '', { source: 'rpm' }),
  pkg('glibc', '2.34-100.el9', 'x86_64', { source: 'rpm' }),
  pkg('glibc', '2.34-100.el9', 'i686', { source: 'rpm' }),
  pkg('python-pip', '1:24.0-1', 'any', { source: 'pacman' }),
  pkg('py3-pip', '23.1.2-r0', 'noarch', { source: 'apk' }),
  pkg('google-chrome', 'latest', '', { source: 'homebrew-cask' }),
  pkg('In-House Tool', '', '', { source: 'system_profiler' }),
  pkg('Legacy Tool (ملف)\u200f', '', 'x86', { source: 'windows-registry' }),
  pkg('org.example.NoVersion', '', '', { source: 'flatpak' }),
  pkg('my-tool', '1.0~rc1', '', { source: 'snap' }),
  pkg('n'.repeat(PACKAGE_FIELD_LIMITS.name), 'v'.repeat(PACKAGE_FIELD_LIMITS.version), 'a'.repeat(PACKAGE_FIELD_LIMITS.architecture), { publisher: 'p'.repeat(PACKAGE_FIELD_LIMITS.publisher) }),
];

/** Records no package manager should produce and the appliance cannot store. */
const UNSTORABLE: SoftwarePackage[] = [
  pkg('', '1.0', 'amd64'),
  pkg('', '', ''),
  pkg('n'.repeat(PACKAGE_FIELD_LIMITS.name + 1), '1', 'amd64'),
  pkg('esc', '1.0\u001b[2J', 'amd64'),
  pkg('bidi', '1.0', 'amd64', { publisher: 'evil\u202egnp.exe' }),
];

/** Records stored with a field that is not part of their identity changed: the date unknown, the publisher cut. */
const STORED_CHANGED: SoftwarePackage[] = [
  pkg('far-future', '1.0', 'amd64', { install_date_unix: 99_999_999_999 }),
  pkg('before-1970', '1.0', 'amd64', { install_date_unix: -1 }),
  pkg('overflow-date', '1.0', 'amd64', { install_date_unix: 2 ** 62 }),
  pkg('year-2200-and-a-second', '1.0', 'amd64', { install_date_unix: 7_258_118_401 }),
  pkg('long-publisher', '1.0', 'amd64', { publisher: 'P'.repeat(PACKAGE_FIELD_LIMITS.publisher + 88) }),
];

/** What the agent counts before sending (SoftwareInventoryChunk.skipped, on the last chunk). */
const HOST_COUNTS = [{ reason: 'unparsable', count: 2, example: 'dpkg-query: warning: odd line' }, { reason: 'duplicate', count: 1, example: 'Safari' }];

const reasonCounts = (skipped: readonly { reason: string; count: number; on_host?: boolean }[]) => skipped.map(({ reason, count, on_host: onHost }) => [reason, count, onHost === true]);

describe('odd package records against a real appliance', () => {
  let started: Awaited<ReturnType<typeof startInventoryAppliance>>;
  let appliance: TestAppliance;
  let client: IngestServiceClient;
  let store: SoftwareInventoryStore;

  before(async () => {
    started = await startInventoryAppliance();
    ({ appliance, client, store } = started);
  });
  after(async () => {
    await started?.dispose();
  });

  test('a scan with the empty-version line, libc6 amd64 and i386 and other odd records stores them all and counts the unstorable ones by reason', async () => {
    const { agentId, jwt } = await activeAgent(appliance, client, 'odd-records');
    const scanId = randomUUID();
    // Spread over two chunks, the unstorable records in both; a repeat of an identity across chunks (another publisher).
    const all = [...packages(0, 480), ...UNSTORABLE.slice(0, 3), ...ODD_BUT_LEGAL, ...STORED_CHANGED, ...UNSTORABLE.slice(3), pkg('libc6', '2.36-9+deb12u4', 'amd64', { publisher: 'someone else' })];
    const chunks = chunksOf(agentId, scanId, all);
    chunks.at(-1)!.skipped = HOST_COUNTS;
    const outcome = await submitScan(client, jwt, chunks);
    assert.ok(outcome.ok, JSON.stringify(outcome));
    const stored = 480 + ODD_BUT_LEGAL.length + STORED_CHANGED.length;
    assert.deepEqual({ ...outcome.value, skipped: undefined }, { scan_id: scanId, packages_received: all.length, added: stored, removed: 0, unchanged: 0, skipped: undefined });
    assert.deepEqual(reasonCounts(outcome.value.skipped), [
      ['duplicate', 1, false], ['duplicate', 1, true], ['install_date_dropped', 4, false], ['name_missing', 2, false], ['name_too_long', 1, false],
      ['publisher_truncated', 1, false], ['publisher_unsafe_text', 1, false], ['unparsable', 2, true], ['version_unsafe_text', 1, false],
    ]);
    assert.equal(outcome.value.skipped.find((entry) => entry.reason === 'name_too_long')!.example, 'n'.repeat(80));
    assert.equal(outcome.value.skipped.find((entry) => entry.reason === 'duplicate' && !entry.on_host)!.example, 'libc6');
    const changed = (await store.packages(agentId)).filter((row) => STORED_CHANGED.some((entry) => entry.name === row.name));
    const byName = (a: readonly unknown[], b: readonly unknown[]) => String(a[0]).localeCompare(String(b[0]));
    assert.deepEqual(
      changed.map((row) => [row.name, row.installDate, row.publisher.length]).sort(byName),
      STORED_CHANGED.map((entry) => [entry.name, null, Math.min(String(entry.publisher).length, PACKAGE_FIELD_LIMITS.publisher)]).sort(byName),
      'stored with the date unknown and the publisher cut',
    );

    const rows = await store.packages(agentId);
    assert.equal(rows.length, stored);
    for (const expected of ODD_BUT_LEGAL) {
      assert.ok(rows.some((row) => row.name === expected.name && row.version === expected.version && row.architecture === expected.architecture && row.source === expected.source), `${String(expected.name).slice(0, 40)} ${expected.architecture} stored`);
    }
    assert.deepEqual(rows.filter((row) => row.name === 'libc6').map((row) => row.architecture), ['amd64', 'i386']);
    assert.equal((await store.getScan(scanId))!.status, 'completed');
    assert.deepEqual(reasonCounts((await store.getScan(scanId))!.skipped), reasonCounts(outcome.value.skipped), 'the counts are kept with the scan record');

    // The admin sees both architectures and the skipped counts.
    const listed = await appliance.cliJson<Array<{ name: string; architecture: string }>>('hosts', 'packages', agentId);
    assert.deepEqual(listed.filter((row) => row.name === 'libc6').map((row) => row.architecture), ['amd64', 'i386']);
    const scans = await appliance.cliJson<Array<{ id: string; skipped: Array<{ reason: string; count: number }> }>>('hosts', 'scans', agentId);
    assert.equal(scans[0]!.id, scanId);
    assert.deepEqual(reasonCounts(scans[0]!.skipped), reasonCounts(outcome.value.skipped));
    const table = await appliance.cli('hosts', 'scans', agentId);
    assert.match(table.stdout, /SKIPPED/);
    assert.match(table.stdout, /duplicate 1, duplicate 1 \(on the host\), name_missing 2, name_too_long 1, publisher_unsafe_text 1, unparsable 2 \(on the host\), version_unsafe_text 1; stored changed: install_date_dropped 4, publisher_truncated 1/);
    assert.doesNotMatch(table.stdout, /\u001b|\u202e/, 'nothing of the unstorable text reaches the terminal raw');
    const search = await appliance.cliJson<Array<{ host_id: string; architecture: string }>>('software', 'search', 'libc6');
    assert.deepEqual(search.filter((row) => row.host_id === agentId).map((row) => row.architecture).sort(), ['amd64', 'i386']);

    // A rescan without libc6:i386 marks exactly that row removed; amd64 stays.
    const rescan = all.filter((entry) => !(entry.name === 'libc6' && entry.architecture === 'i386'));
    const again = await submitScan(client, jwt, chunksOf(agentId, randomUUID(), rescan));
    assert.ok(again.ok, JSON.stringify(again));
    assert.equal(again.value.removed, 1);
    assert.deepEqual((await store.packages(agentId)).filter((row) => row.name === 'libc6').map((row) => [row.architecture, row.isRemoved]), [['amd64', false], ['i386', true]]);
  });

  test('a package with invalid UTF-8 on the wire is skipped and counted, the rest of its chunk stored', async () => {
    const { agentId, jwt } = await activeAgent(appliance, client, 'odd-utf8');
    const chunkType = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root.lookupType('ctops.ingest.v1.SoftwareInventoryChunk');
    const scanId = randomUUID();
    const body = Buffer.from(chunkType.encode(chunkType.fromObject({ agent_id: agentId, scan_id: scanId, task_id: '', chunk_index: 0, is_last: true, packages: [...packages(0, 3), pkg('PLACEHOLDER', '1.0', 'amd64'), ...packages(3, 5)] })).finish());
    const at = body.indexOf('PLACEHOLDER');
    Buffer.from([0x6e, 0xff, 0xfe, 0xc3, 0x28, 0x61, 0xed, 0xa0, 0x80, 0x62, 0x63]).copy(body, at);
    const { status, message } = await rawGrpcCall(appliance.grpcPort, appliance.caCert, 'SubmitSoftwareInventory', [body], { authorization: `Bearer ${jwt}` });
    assert.equal(status, '0', message);
    assert.equal((await store.packages(agentId)).length, 5);
    assert.deepEqual((await store.getScan(scanId))!.skipped.map(({ reason, count }) => [reason, count]), [['invalid_utf8', 1]]);
    // Bytes that are not protobuf at all still refuse the chunk.
    const garbage = await rawGrpcCall(appliance.grpcPort, appliance.caCert, 'SubmitSoftwareInventory', [Buffer.from([0x2a, 0x05, 0xff])], { authorization: `Bearer ${jwt}` });
    assert.equal(garbage.status, String(GrpcCode.INVALID_ARGUMENT));
  });

  test("the host's counts: one entry per reason at most, a reason this appliance does not know is kept as unknown_reason", async () => {
    const { agentId, jwt } = await activeAgent(appliance, client, 'odd-host-counts');
    const withCounts = (skipped: { reason: string; count: number; example: string }[]) => {
      const chunks = chunksOf(agentId, randomUUID(), packages(0, 3));
      chunks.at(-1)!.skipped = skipped;
      return submitScan(client, jwt, chunks);
    };
    const flood = await withCounts(Array.from({ length: 200 }, () => ({ reason: 'unparsable', count: 1, example: '' })));
    assert.equal(flood.ok, false, 'more entries than reasons');
    if (!flood.ok) assert.equal(codeFromGrpcDetails(flood.details), 'ERR_INVALID_ARGUMENT');
    const newer = await withCounts([{ reason: 'rm -rf \u001b[2J', count: 2, example: 'pkg' }]);
    assert.ok(newer.ok, JSON.stringify(newer));
    const [unknown] = newer.value.skipped;
    assert.deepEqual([unknown!.reason, unknown!.count, unknown!.on_host], ['unknown_reason', 2, true]);
    assert.ok(unknown!.example.startsWith('rm -rf \\x1b[2J: pkg'), `the reason is named, escaped: ${unknown!.example}`);
    const hostile = await withCounts([{ reason: 'unparsable', count: 3, example: `\u001b]0;owned\u0007${'x'.repeat(200)}` }]);
    assert.ok(hostile.ok, JSON.stringify(hostile));
    const [entry] = hostile.value.skipped;
    assert.deepEqual([entry!.reason, entry!.count, entry!.on_host], ['unparsable', 3, true]);
    assert.ok(entry!.example.startsWith('\\x1b]0;owned\\x07') && entry!.example.length <= 100, 'the example is escaped and cut like the appliance\'s own');
  });

  test('a scan in which no package can be stored is refused and marks nothing removed', async () => {
    const { agentId, jwt } = await activeAgent(appliance, client, 'odd-all-bad');
    assert.ok((await submitScan(client, jwt, chunksOf(agentId, randomUUID(), packages(0, 10)))).ok);
    const lastInventory = await store.lastInventoryAt(agentId);
    const scanId = randomUUID();
    const outcome = await submitScan(client, jwt, chunksOf(agentId, scanId, UNSTORABLE));
    assert.equal(outcome.ok, false);
    if (outcome.ok) return;
    assert.equal(outcome.code, GrpcCode.INVALID_ARGUMENT);
    assert.equal(codeFromGrpcDetails(outcome.details), 'ERR_INVALID_ARGUMENT');
    assert.match(outcome.details, /no storable packages .*skipped: name_missing 2, name_too_long 1/);
    assert.notEqual((await store.getScan(scanId))?.status, 'completed');
    assert.equal(await store.lastInventoryAt(agentId), lastInventory);
    assert.equal((await store.packages(agentId)).filter((row) => row.isRemoved).length, 0);
  });
});

test('migration 008 keeps every package row and its id, keeps the id counter, and lets multi-arch twins coexist', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-migration-008-'));
  try {
    const path = join(dir, 'v5.db');
    const v5 = openDatabase(path, MIGRATIONS.filter((migration) => migration.version <= 5));
    v5.prepare("INSERT INTO organisations (id, name, created_at) VALUES ('org_migrate', 'migrate', 1)").run();
    v5.prepare(
      `INSERT INTO hosts (id, org_id, public_key, hostname, machine_fingerprint, os, arch, agent_version, approval, tags, enrolled_at, last_registered_at)
       VALUES ('hst_migrate0001', 'org_migrate', ?, 'm', 'fp', 'linux', 'x64', '0.1.0', 'active', '{}', 1, 1)`,
    ).run(Buffer.alloc(32, 8));
    v5.prepare("INSERT INTO software_scans (id, host_id, task_id, started_at, updated_at, completed_at, status) VALUES ('scan-v5-00000', 'hst_migrate0001', '', 1, 1, 1, 'completed')").run();
    const insert = v5.prepare("INSERT INTO software_packages (host_id, name, version, source, architecture, publisher, first_seen, last_seen, last_seen_scan) VALUES ('hst_migrate0001', ?, '2.36', 'dpkg', ?, '', 1, 1, 1)");
    for (const name of ['bash', 'libc6', 'zlib1g', 'gone']) insert.run(name, 'amd64');
    v5.prepare("DELETE FROM software_packages WHERE name = 'gone'").run();
    const before = v5.prepare('SELECT id, name, architecture FROM software_packages ORDER BY id').all();
    v5.close();

    const stores = openStores(path);
    try {
      assert.equal(stores.db.pragma('user_version', { simple: true }), MIGRATIONS.at(-1)!.version);
      assert.deepEqual(stores.db.prepare('SELECT id, name, architecture FROM software_packages ORDER BY id').all(), before);
      assert.equal((await stores.softwareInventory.getScan('scan-v5-00000'))!.skipped.length, 0);
      const result = await addChunk(stores, {
        scanId: 'scan-v8-00000', taskId: '', hostId: 'hst_migrate0001', chunkIndex: 0, isLast: true, now: 10,
        packages: ['amd64', 'i386'].map((architecture) => ({ name: 'libc6', version: '2.36', source: 'dpkg', architecture, publisher: '', installDate: null })),
      });
      assert.deepEqual([result.added, result.unchanged, result.scan.removed], [1, 1, 2]);
      const ids = stores.db.prepare<[], { id: number; architecture: string }>("SELECT id, architecture FROM software_packages WHERE name = 'libc6' ORDER BY id").all();
      assert.equal(ids.length, 2);
      assert.ok(ids[1]!.id > 4, `the deleted row's id 4 is not handed out again (got ${ids[1]!.id})`);
      assert.deepEqual((await stores.softwareInventory.hostsWithPackage('libc6')).map((row) => row.architecture).sort(), ['amd64', 'i386']);
    } finally {
      stores.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a new database keys packages by host, name, version, source and architecture', async () => {
  const db = new Database(':memory:');
  migrate(db, MIGRATIONS);
  const unique = db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE name = 'software_packages'").get()!.sql;
  assert.match(unique, /UNIQUE \(host_id, name, version, source, architecture\)/);
  db.close();
});

test('a scan restarted from chunk 0 counts its skipped packages once, and the first example of each reason is kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-skipped-restart-'));
  try {
    const stores = openStores(join(dir, 'restart.db'));
    try {
      const org = await stores.organisations.ensureDefault(1);
      stores.db.prepare(
        `INSERT INTO hosts (id, org_id, public_key, hostname, machine_fingerprint, os, arch, agent_version, approval, tags, enrolled_at, last_registered_at)
         VALUES ('hst_restart0001', ?, ?, 'r', 'fp', 'linux', 'x64', '0.1.0', 'active', '{}', 1, 1)`,
      ).run(org.id, Buffer.alloc(32, 9));
      const chunk = (chunkIndex: number, isLast: boolean, example: string) => ({
        scanId: 'scan-restart-0', taskId: '', hostId: 'hst_restart0001', chunkIndex, isLast, now: 10 + chunkIndex,
        packages: [{ name: `p${chunkIndex}`, version: '', source: 'dpkg', architecture: 'all', publisher: '', installDate: null }],
        skipped: [{ reason: 'name_too_long' as const, count: 2, example }],
      });
      await addChunk(stores, chunk(0, false, 'first'));
      assert.ok(await closeScan(stores, 'scan-restart-0', 'hst_restart0001', 'cut_off', 'ERR_INVENTORY_SCAN_INCOMPLETE', 11));
      await addChunk(stores, chunk(0, false, 'first again'));
      const done = await addChunk(stores, chunk(1, true, 'second'));
      assert.equal(done.scan.status, 'completed');
      assert.deepEqual(done.scan.skipped, [{ reason: 'name_too_long', count: 4, example: 'first again' }]);
      assert.equal(done.scan.packagesReceived, 6, 'two stored, four skipped');
    } finally {
      stores.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
