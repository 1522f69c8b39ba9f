import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { IngestServiceClient } from '../common/proto.ts';
import type { SoftwarePackage } from '../proto/gen/ctops/ingest/v1/SoftwarePackage.ts';
import { newId } from '../appliance/lib/ids.ts';
import { DATABASE_FILE } from '../appliance/serve.ts';
import { openStores, type SqliteStores } from '../appliance/store/index.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';
import { ingestClient } from './helpers/ingest-client.ts';
import { activeAgent, chunksOf, packages, submitScan } from './helpers/inventory.ts';
import { addChunk, indexNames } from './helpers/inventory-store.ts';

type PackageJson = { name: string; version: string; source: string; architecture: string; publisher: string; install_date: string | null; is_removed: boolean; first_seen: string; last_seen: string; removed_at: string | null };
type ScanJson = { id: string; task_id: string; status: string; started_at: string; completed_at: string | null; chunks: number; packages_received: number; added: number; removed: number; unchanged: number; error_code: string | null };
type HitJson = { host_id: string; hostname: string; name: string; version: string; source: string; is_removed: boolean; first_seen: string; last_seen: string };
type SettingsJson = { interval_hours: number; sources: { snap: boolean; flatpak: boolean; windows_store: boolean }; removed_retention_days: number };

const dpkg = (name: string, version: string): SoftwarePackage => ({ name, version, source: 'dpkg', architecture: 'amd64', publisher: 'Debian', install_date_unix: 1_700_000_000 });

/** Real Debian versions, chosen so that text order and package-version order disagree. */
const ALPHA_FIRST = [
  dpkg('openssl', '3.0.11-1~deb12u2'),
  dpkg('libc6', '2.36-9+deb12u4'),
  dpkg('curl', '7.88.1-10+deb12u8'),
  dpkg('vim', '2:9.0.1378-2'),
  dpkg('tool', '1.0~rc1'),
  ...packages(0, 600),
];
/** The rescan: curl gone, openssl upgraded (a new record; the old one is removed), the rest unchanged. */
const ALPHA_SECOND = [...ALPHA_FIRST.filter((pkg) => pkg.name !== 'curl' && pkg.name !== 'openssl'), dpkg('openssl', '3.0.13-1~deb12u1')];
const BETA = [dpkg('openssl', '3.0.13-1'), dpkg('libc6', '2.36-9+deb12u10'), dpkg('curl', '7.88.1-10+deb12u8'), dpkg('vim', '9.1.0016-1'), dpkg('tool', '1.0')];

describe('software inventory through the admin API and CLI of a real appliance', () => {
  let appliance: TestAppliance;
  let client: IngestServiceClient;
  let dataDir: string;
  let credential: string;
  let alpha: string;
  let beta: string;
  let foreign: string;
  let firstListing: PackageJson[];

  const api = (method: string, path: string, body?: unknown) => httpsJson(appliance.httpPort, appliance.caCert, method, path, { bearer: credential, ...(body === undefined ? {} : { body }) });
  const search = (name: string, ...flags: string[]) => appliance.cliJson<HitJson[]>('software', 'search', name, ...flags);
  const hits = (rows: HitJson[]) => rows.map((row) => `${row.hostname}:${row.version}${row.is_removed ? ' (removed)' : ''}`);
  const scan = async (jwt: string, agentId: string, list: SoftwarePackage[]) => {
    const outcome = await submitScan(client, jwt, chunksOf(agentId, randomUUID(), list));
    assert.ok(outcome.ok, JSON.stringify(outcome));
  };

  /**
   * Changes what no API changes (another organisation, a setting an older appliance could have
   * stored, the batched name index now) in the appliance's database while no appliance serves it,
   * then starts the appliance again on the same data directory and gRPC port.
   */
  const whileStopped = async (change: (stores: SqliteStores) => void | Promise<void>): Promise<void> => {
    const grpcPort = appliance?.grpcPort;
    await appliance?.stop();
    const stores = openStores(join(dataDir, DATABASE_FILE));
    try {
      await change(stores);
    } finally {
      stores.close();
    }
    appliance = await TestAppliance.start({ dataDir, ...(grpcPort !== undefined ? { grpcPort } : {}) });
    client?.close();
    client = ingestClient(appliance.address, appliance.caCert);
  };

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-inventory-api-'));
    // A host of another organisation with openssl installed: invisible to this organisation's admin.
    // No API makes organisations, so it is written before the appliance first starts.
    await whileStopped(async (stores) => {
      const orgId = newId('org');
      stores.db.prepare('INSERT INTO organisations (id, name, created_at) VALUES (?, ?, ?)').run(orgId, 'elsewhere', Date.now());
      foreign = newId('hst');
      await stores.hosts.insert({
        id: foreign, orgId, publicKey: randomBytes(32), hostname: 'foreign', machineFingerprint: 'foreign', os: 'linux', arch: 'x64', agentVersion: '0.1.0',
        approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: Date.now(),
      });
      const pkg = { name: 'openssl', version: '3.0.13-1', source: 'dpkg', architecture: 'amd64', publisher: '', installDate: null };
      await addChunk(stores, { scanId: randomUUID(), taskId: '', hostId: foreign, chunkIndex: 0, packages: [pkg], isLast: true, now: Date.now() });
    });
    credential = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();

    const a = await activeAgent(appliance, client, 'alpha');
    const b = await activeAgent(appliance, client, 'beta');
    alpha = a.agentId;
    beta = b.agentId;
    await scan(a.jwt, alpha, ALPHA_FIRST);
    firstListing = await appliance.cliJson<PackageJson[]>('hosts', 'packages', alpha);
    await scan(a.jwt, alpha, ALPHA_SECOND);
    await scan(b.jwt, beta, BETA);
  });
  after(async () => {
    client?.close();
    await appliance?.dispose();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('hosts packages lists the live packages by name; a first scan shows every field', async () => {
    assert.equal(firstListing.length, ALPHA_FIRST.length);
    const openssl = firstListing.find((pkg) => pkg.name === 'openssl')!;
    assert.deepEqual(
      { ...openssl, first_seen: typeof openssl.first_seen, last_seen: typeof openssl.last_seen },
      { name: 'openssl', version: '3.0.11-1~deb12u2', source: 'dpkg', architecture: 'amd64', publisher: 'Debian', install_date: '2023-11-14T22:13:20.000Z', is_removed: false, first_seen: 'string', last_seen: 'string', removed_at: null },
    );
    assert.ok(!Number.isNaN(Date.parse(openssl.first_seen)));
    const names = firstListing.map((pkg) => pkg.name);
    assert.deepEqual(names, [...names].sort(), 'ordered by name');
  });

  test('after a rescan that drops curl and upgrades openssl, removed records show only with --removed and keep first_seen', async () => {
    const live = await appliance.cliJson<PackageJson[]>('hosts', 'packages', alpha);
    assert.equal(live.length, ALPHA_SECOND.length);
    assert.ok(live.every((pkg) => pkg.is_removed === false && pkg.removed_at === null));
    assert.equal(live.some((pkg) => pkg.name === 'curl'), false);
    assert.deepEqual(live.filter((pkg) => pkg.name === 'openssl').map((pkg) => pkg.version), ['3.0.13-1~deb12u1']);

    const all = await appliance.cliJson<PackageJson[]>('hosts', 'packages', alpha, '--removed');
    assert.equal(all.length, ALPHA_SECOND.length + 2);
    const removed = all.filter((pkg) => pkg.is_removed);
    assert.deepEqual(removed.map((pkg) => `${pkg.name}@${pkg.version}`), ['curl@7.88.1-10+deb12u8', 'openssl@3.0.11-1~deb12u2']);
    for (const pkg of removed) {
      const before = firstListing.find((first) => first.name === pkg.name && first.version === pkg.version)!;
      assert.equal(pkg.first_seen, before.first_seen, `${pkg.name} kept first_seen`);
      assert.equal(typeof pkg.removed_at, 'string');
    }
    const vim = all.find((pkg) => pkg.name === 'vim')!;
    const vimBefore = firstListing.find((pkg) => pkg.name === 'vim')!;
    assert.equal(vim.first_seen, vimBefore.first_seen, 'a package seen again keeps first_seen');
    assert.ok(Date.parse(vim.last_seen) >= Date.parse(vimBefore.last_seen));

    const table = await appliance.cli('hosts', 'packages', alpha);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+VERSION\s+SOURCE\s+ARCHITECTURE\s+FIRST_SEEN/m);
    assert.match(table.stdout, /^openssl\s+3\.0\.13-1~deb12u1\s+dpkg\s+amd64/m);
  });

  test('the API pages a host package list with limit and offset', async () => {
    const page = async (offset: number) => (await api('GET', `/api/v1/hosts/${alpha}/packages?limit=2&offset=${offset}&removed=true`)).body as PackageJson[];
    const all = await appliance.cliJson<PackageJson[]>('hosts', 'packages', alpha, '--removed');
    assert.deepEqual([...(await page(0)), ...(await page(2))], all.slice(0, 4));
    assert.deepEqual(await page(all.length), []);
  });

  test('hosts scans shows the scan history newest first with what each scan added, removed and kept', async () => {
    const scans = await appliance.cliJson<ScanJson[]>('hosts', 'scans', alpha);
    assert.equal(scans.length, 2);
    const [second, first] = scans;
    assert.deepEqual(
      [second!.status, second!.packages_received, second!.added, second!.removed, second!.unchanged, second!.chunks],
      ['completed', ALPHA_SECOND.length, 1, 2, ALPHA_SECOND.length - 1, 2],
    );
    assert.deepEqual([first!.status, first!.packages_received, first!.added, first!.removed, first!.unchanged], ['completed', ALPHA_FIRST.length, ALPHA_FIRST.length, 0, 0]);
    assert.equal(first!.task_id, '');
    assert.equal(first!.error_code, null);
    assert.ok(Date.parse(second!.started_at) >= Date.parse(first!.completed_at!));
    assert.deepEqual((await appliance.cliJson<ScanJson[]>('hosts', 'scans', alpha, '--limit', '1')).map((row) => row.id), [second!.id]);
    assert.match((await appliance.cli('hosts', 'scans', beta)).stdout, /^ID\s+STATUS\s+STARTED_AT/m);
  });

  test('software search finds hosts by exact name, filtering versions in package-version order', async () => {
    assert.deepEqual(hits(await search('openssl')), ['alpha:3.0.13-1~deb12u1', 'beta:3.0.13-1'], 'ordered by version; the other organisation is not shown');
    assert.deepEqual(hits(await search('openssl', '--removed')), ['alpha:3.0.11-1~deb12u2 (removed)', 'alpha:3.0.13-1~deb12u1', 'beta:3.0.13-1']);
    // 3.0.13-1~deb12u1 is a backport that sorts before the 3.0.13-1 release (as text it sorts after).
    assert.deepEqual(hits(await search('openssl', '--max-version', '3.0.13-1~deb12u1')), ['alpha:3.0.13-1~deb12u1']);
    assert.deepEqual(hits(await search('openssl', '--min-version', '3.0.13-1')), ['beta:3.0.13-1'], 'min is inclusive');
    assert.deepEqual(hits(await search('openssl', '--min-version', '3.0.13-1', '--max-version', '3.0.13-1')), ['beta:3.0.13-1'], 'max is inclusive');
    // deb12u10 is later than deb12u5, though it sorts earlier as text.
    assert.deepEqual(hits(await search('libc6', '--min-version', '2.36-9+deb12u5')), ['beta:2.36-9+deb12u10']);
    // An epoch outranks any upstream version: 2:9.0 is later than 9.9.
    assert.deepEqual(hits(await search('vim', '--max-version', '9.9')), ['beta:9.1.0016-1']);
    assert.deepEqual(hits(await search('vim', '--min-version', '1:0')), ['alpha:2:9.0.1378-2']);
    // ~ sorts before everything: a release candidate is earlier than the release.
    assert.deepEqual(hits(await search('tool', '--max-version', '1.0~rc2')), ['alpha:1.0~rc1']);
    assert.deepEqual(hits(await search('tool', '--min-version', '1.0')), ['beta:1.0']);
    assert.deepEqual(hits(await search('curl')), ['beta:7.88.1-10+deb12u8']);
    assert.deepEqual(hits(await search('curl', '--removed')), ['alpha:7.88.1-10+deb12u8 (removed)', 'beta:7.88.1-10+deb12u8']);
    assert.deepEqual(await search('Openssl'), [], 'names are exact: no case folding');
    assert.deepEqual(await search('open'), [], 'names are exact: no prefix match');

    const [hit] = await search('tool', '--min-version', '1.0');
    assert.deepEqual(Object.keys(hit!).sort(), ['architecture', 'first_seen', 'host_id', 'hostname', 'is_removed', 'last_seen', 'name', 'source', 'version']);
    assert.equal(hit!.host_id, beta);
    const table = await appliance.cli('software', 'search', 'openssl');
    assert.match(table.stdout, /^HOSTNAME\s+HOST_ID\s+VERSION/m);
  });

  test('search answers the same once the names are in the batched name index', async () => {
    const before = await search('openssl', '--removed');
    await whileStopped(async (stores) => assert.ok((await indexNames(stores)) > 0));
    assert.deepEqual(await search('openssl', '--removed'), before);
    assert.deepEqual(hits(await search('libc6', '--min-version', '2.36-9+deb12u5')), ['beta:2.36-9+deb12u10']);
  });

  test("another organisation's host and an unknown host are not found, by the CLI and the API", async () => {
    for (const id of [foreign, 'hst_00000000000000000000']) {
      for (const sub of ['packages', 'scans']) {
        const cli = await appliance.cli('hosts', sub, id);
        assert.equal(cli.code, 66, `${sub} ${id}: ${cli.stderr}`);
        assert.match(cli.stderr, /ERR_HOST_NOT_FOUND/);
        const http = await api('GET', `/api/v1/hosts/${id}/${sub}`);
        assert.equal(http.status, 404);
        assert.equal(http.body.error.code, 'ERR_HOST_NOT_FOUND');
      }
    }
  });

  test('a deleted host leaves the search but its inventory stays readable', async () => {
    const { agentId, jwt } = await activeAgent(appliance, client, 'retired');
    await scan(jwt, agentId, [dpkg('tool', '0.9')]);
    assert.deepEqual(hits(await search('tool', '--max-version', '0.9')), ['retired:0.9']);
    assert.equal((await appliance.cli('hosts', 'delete', agentId)).code, 0, 'deleted through the admin API');
    assert.deepEqual(await search('tool', '--max-version', '0.9'), []);
    assert.deepEqual((await appliance.cliJson<PackageJson[]>('hosts', 'packages', agentId)).map((pkg) => pkg.version), ['0.9']);
  });

  test('malformed queries are refused with ERR_INVALID_ARGUMENT before any lookup', async () => {
    const refused = [
      `/api/v1/software?name=openssl&min_version=${'1'.repeat(257)}`,
      `/api/v1/software?name=${'n'.repeat(513)}`,
      '/api/v1/software',
      '/api/v1/software?name=',
      '/api/v1/software?name=open%01ssl',
      '/api/v1/software?name=openssl&include_removed=yes',
      '/api/v1/software?name=openssl&version=1',
      `/api/v1/hosts/${alpha}/scans?limit=0`,
      `/api/v1/hosts/${alpha}/scans?limit=1001`,
      `/api/v1/hosts/${alpha}/packages?limit=0`,
      `/api/v1/hosts/${alpha}/packages?limit=5001`,
      `/api/v1/hosts/${alpha}/packages?offset=-1`,
      `/api/v1/hosts/${alpha}/packages?removed=1`,
      '/api/v1/hosts/not-a-host/packages',
    ];
    for (const path of refused) {
      const response = await api('GET', path);
      assert.equal(response.status, 400, path);
      assert.equal(response.body.error.code, 'ERR_INVALID_ARGUMENT', path);
    }
    const cli = await appliance.cli('software', 'search', 'openssl', '--min-version', '1'.repeat(257));
    assert.equal(cli.code, 65);
    assert.match(cli.stderr, /ERR_INVALID_ARGUMENT/);
    assert.equal((await appliance.cli('hosts', 'scans', alpha, '--limit', '0')).code, 64, 'the CLI refuses a limit of 0 as usage');
    assert.equal((await api('GET', `/api/v1/software?name=openssl&min_version=${'1'.repeat(256)}`)).status, 200, '256 characters is the longest version');
  });

  test('settings inventory shows the defaults, patches only what is given, and refuses bad intervals changing nothing', async () => {
    assert.deepEqual(await appliance.cliJson<SettingsJson>('settings', 'inventory'), { interval_hours: 24, sources: { snap: false, flatpak: false, windows_store: false }, removed_retention_days: 90 });
    const changed = await appliance.cliJson<SettingsJson>('settings', 'inventory', '--interval-hours', '6', '--snap', 'on', '--windows-store', 'on');
    assert.deepEqual(changed, { interval_hours: 6, sources: { snap: true, flatpak: false, windows_store: true }, removed_retention_days: 90 });
    assert.deepEqual(await appliance.cliJson<SettingsJson>('settings', 'inventory', '--flatpak', 'on', '--snap', 'off'), { interval_hours: 6, sources: { snap: false, flatpak: true, windows_store: true }, removed_retention_days: 90 });
    const expected = { interval_hours: 6, sources: { snap: false, flatpak: true, windows_store: true }, removed_retention_days: 90 };
    assert.deepEqual(await appliance.cliJson<SettingsJson>('settings', 'inventory'), expected);
    assert.deepEqual((await api('GET', '/api/v1/settings/inventory')).body, expected);

    for (const hours of ['0', '721', '1.5', '-3']) {
      const refused = await appliance.cli('settings', 'inventory', '--interval-hours', hours, '--snap', 'on');
      assert.equal(refused.code, 65, `${hours}: ${refused.stderr}`);
      assert.match(refused.stderr, /ERR_INVALID_ARGUMENT/);
    }
    for (const body of [{ interval_hours: '6' }, { interval_hours: 720.5 }, { sources: { snap: 'yes' } }, { sources: { zypper: true } }, { colour: 'blue' }]) {
      const refused = await api('PATCH', '/api/v1/settings/inventory', body);
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.equal(refused.body.error.code, 'ERR_INVALID_ARGUMENT');
    }
    assert.equal((await appliance.cli('settings', 'inventory', '--snap', 'maybe')).code, 64);
    assert.equal((await appliance.cli('settings', 'inventory', '--interval-hours', 'daily')).code, 64);
    assert.deepEqual(await appliance.cliJson<SettingsJson>('settings', 'inventory'), expected, 'nothing changed');
    assert.deepEqual((await api('PATCH', '/api/v1/settings/inventory', { interval_hours: 720 })).body.interval_hours, 720, '720 hours is the longest interval');

    const text = await appliance.cli('settings', 'inventory');
    assert.match(text.stdout, /^interval_hours: 720$/m);
    assert.match(text.stdout, /^flatpak: on$/m);
  });

  test('a stored setting that does not parse reads as its default instead of failing', async () => {
    const defaultOrg = (stores: SqliteStores) => (stores.db.prepare("SELECT id FROM organisations WHERE name = 'default'").get() as { id: string }).id;
    await whileStopped(async (stores) => {
      await stores.organisations.putSetting(defaultOrg(stores), 'inventory.interval_hours', 'weekly');
      await stores.organisations.putSetting(defaultOrg(stores), 'inventory.source.snap', 'yes please');
      await stores.organisations.putSetting(defaultOrg(stores), 'inventory.source.flatpak', 'true');
    });
    assert.deepEqual(await appliance.cliJson<SettingsJson>('settings', 'inventory'), { interval_hours: 24, sources: { snap: false, flatpak: true, windows_store: true }, removed_retention_days: 90 });
    await whileStopped((stores) => stores.organisations.putSetting(defaultOrg(stores), 'inventory.interval_hours', '0'));
    assert.equal((await appliance.cliJson<SettingsJson>('settings', 'inventory')).interval_hours, 24);
  });
});
