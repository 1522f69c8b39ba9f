import assert from 'node:assert/strict';
import { after } from 'node:test';
import { hostStatus, type HostStatus } from '../appliance/hosts/status.ts';
import type { Approval } from '../appliance/model/host.ts';
import { ApplianceInstanceStore } from '../appliance/store/appliance-instances.ts';
import { HOST_SORT_KEYS, hostStatusSql, type HostFilter, type HostSort } from '../appliance/store/host-page.ts';
import { HostStore, type Host, type NewHost } from '../appliance/store/hosts.ts';
import { HostVitalsStore } from '../appliance/store/host-vitals.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance, type OpenBackend } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

const ORG = 'org_p';
const AT = 1_764_000_000_000;
/** The lease clock the pages are read at. */
const NOW = AT + 1_000_000;

const APPROVALS: readonly Approval[] = ['pending', 'active', 'rejected', 'revoked'];
/** How a host's stream row stands: none, held by a live instance, by one whose lease ran out, by one that left no row. */
const STREAMS = ['none', 'live', 'expired-lease', 'no-instance'] as const;
const IDENTITIES = [null, 'conflict', 'resolved'] as const;

interface World {
  hosts: HostStore;
  instances: ApplianceInstanceStore;
  backend: OpenBackend;
}

async function world(backend: OpenBackend): Promise<World> {
  await backend.kysely.insertInto('organisations').values({ id: ORG, name: 'p', created_at: AT }).execute();
  const instances = new ApplianceInstanceStore(backend.kysely, backend.name);
  await instances.renewLease('ins_live', NOW, 60_000);
  // Its lease ran out a while before NOW.
  await instances.renewLease('ins_expired', NOW - 100_000, 15_000);
  return { hosts: new HostStore(backend.kysely, backend.name), instances, backend };
}

function newHost(id: string, fields: Partial<NewHost> = {}): NewHost {
  return {
    id, orgId: ORG, publicKey: Buffer.from(id.padEnd(32, '.')), hostname: `${id}.example`, machineFingerprint: `fp-${id}`, os: 'linux', arch: 'x64',
    agentVersion: '1.0.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: AT, ...fields,
  };
}

/** Gives the host a stream row as `stream` says. */
async function stream({ instances }: World, hostId: string, stream: (typeof STREAMS)[number]): Promise<void> {
  const holder = { none: undefined, live: 'ins_live', 'expired-lease': 'ins_expired', 'no-instance': 'ins_gone' }[stream];
  if (holder !== undefined) await instances.claimStream(hostId, holder, `str-${hostId}`, undefined, NOW - 10);
}

/** Every page of `filter` in `sort`'s order, `size` at a time; each page's total must be the same. */
async function allPages({ hosts }: World, filter: HostFilter, sort: HostSort, size: number): Promise<{ ids: string[]; total: number }> {
  const ids: string[] = [];
  const totals = new Set<number>();
  for (let offset = 0; ; offset += size) {
    const page = await hosts.page(ORG, filter, sort, size, offset, NOW);
    totals.add(page.total);
    ids.push(...page.hosts.map((host) => host.id));
    if (page.hosts.length < size) break;
  }
  assert.equal(totals.size, 1, 'every page counts the same total');
  return { ids, total: [...totals][0]! };
}

conformance('the SQL status agrees with hostStatus() for every approval, stream, heartbeat, deletion and identity state, and the status filter and sort use it', async (backend) => {
  const w = await world(backend);
  const expected = new Map<string, HostStatus>();
  const streaming = new Set<string>();
  let n = 0;
  for (const approval of APPROVALS) {
    for (const streamState of STREAMS) {
      for (const heartbeat of [null, AT + 5] as const) {
        for (const deleted of [false, true]) {
          for (const identity of IDENTITIES) {
            const id = `hst_s${String((n += 1)).padStart(3, '0')}`;
            await w.hosts.insert(newHost(id, { approval }));
            if (identity !== null) await w.hosts.flagIdentityConflict(id);
            if (identity === 'resolved') await w.hosts.resolveIdentity(id, { fingerprint: 'fp-kept', instance: null }, 1, Buffer.alloc(32, 1), AT + 2);
            if (heartbeat !== null) await w.hosts.recordHeartbeats([{ hostId: id, receivedAt: heartbeat, intervalSecs: 30, agentVersion: '1.0.0', cpuPercent: 1, memoryPercent: 1, diskPercent: 1, uptimeSeconds: 1, clockOffsetMs: null }]);
            if (deleted) await w.hosts.markDeleted(id, AT + 9, 'admin');
            await stream(w, id, streamState);
            if (streamState === 'live') streaming.add(id);
            expected.set(id, hostStatus({ approval, streaming: streamState === 'live', lastHeartbeatAt: heartbeat, deleted, identityConflict: identity === 'conflict' }));
          }
        }
      }
    }
  }
  const stored = await Promise.all([...expected.keys()].map(async (id) => (await w.hosts.get(id))!));
  assert.deepEqual(stored.map((host) => host.identityState), [...expected.keys()].map((_, index) => IDENTITIES[index % 3]), 'each identity state was set as meant');

  // The expression itself, over every host (deleted ones too): what page filters and sorts on.
  const rows = await backend.kysely.selectFrom('hosts').select((eb) => ['hosts.id', hostStatusSql(backend.kysely, eb, NOW).as('status')]).execute();
  assert.deepEqual(new Map(rows.map((row) => [row.id, row.status])), expected);
  assert.deepEqual(new Set(expected.values()), new Set<HostStatus>(['pending', 'rejected', 'revoked', 'deleted', 'identity-conflict', 'online', 'offline', 'never-connected']), 'every status is reached');
  assert.deepEqual(await w.instances.streamingAmong([...expected.keys()], NOW), streaming, 'the hosts online are those PresenceService.onlineAmong names');

  // Filtering: each status's page holds exactly the listed hosts of that status, and says them online as onlineAmong does.
  for (const status of new Set(expected.values())) {
    const page = await w.hosts.page(ORG, { status }, { key: 'hostname', descending: false }, 500, 0, NOW);
    const meant = [...expected].filter(([id, of]) => of === status && !stored.find((host) => host.id === id)!.deletedAt).map(([id]) => id).sort();
    assert.deepEqual(page.hosts.map((host) => host.id), meant, status);
    assert.equal(page.total, meant.length);
    for (const host of page.hosts) assert.equal(viewedStatus(host, page.online), status, `${host.id} shows the status it was filtered by`);
  }

  // The overview's counts: one GROUP BY over the same expression, deleted hosts left out.
  const counts = await w.hosts.statusCounts(ORG, NOW);
  for (const status of new Set(expected.values())) {
    const meant = [...expected].filter(([id, of]) => of === status && !stored.find((host) => host.id === id)!.deletedAt).length;
    assert.equal(counts.get(status) ?? 0, meant, `count of ${status}`);
  }

  // Sorting by status groups the hosts in the statuses' text order, ids ascending within each.
  const sorted = await allPages(w, {}, { key: 'status', descending: false }, 17);
  const listed = [...expected].filter(([id]) => !stored.find((host) => host.id === id)!.deletedAt);
  assert.deepEqual(sorted.ids, listed.sort(([a, sa], [b, sb]) => compare(sa, sb) || compare(a, b)).map(([id]) => id));
});

/** The status the admin API shows for a host of a page (hostStatus with the page's online set). */
function viewedStatus(host: Host, online: ReadonlySet<string>): HostStatus {
  return hostStatus({ approval: host.approval, streaming: online.has(host.id), lastHeartbeatAt: host.lastHeartbeatAt, deleted: host.deletedAt !== null, identityConflict: host.identityState === 'conflict' });
}

/** Text order as both backends compare it here (SQLite BINARY, the test cluster's C.UTF-8 collation): by code point. */
function compare(a: string | number | null, b: string | number | null): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  return a < b ? -1 : 1;
}

/** Hostnames chosen so that case, % and _ matter: a search must take them literally, a sort must ignore case. */
const FLEET: ReadonlyArray<Partial<NewHost> & { id: string; stream?: boolean; heartbeat?: number; approvedAs?: Approval }> = [
  { id: 'hst_f01', hostname: 'web-01', os: 'linux', agentVersion: '1.2.0', tags: { role: 'web', site: 'ber' }, heartbeat: AT + 30, stream: true },
  { id: 'hst_f02', hostname: 'WEB-02', os: 'windows', agentVersion: '1.2.0', tags: { role: 'web' }, heartbeat: AT + 10 },
  { id: 'hst_f03', hostname: 'web_03', os: 'linux', agentVersion: '1.1.0', tags: { role: 'db' }, heartbeat: AT + 30 },
  { id: 'hst_f04', hostname: 'web%04', os: 'darwin', agentVersion: '1.10.0', tags: {}, approvedAs: 'pending' },
  { id: 'hst_f05', hostname: 'webX04', os: 'linux', agentVersion: '1.2.0', tags: { role: 'Web' } },
  { id: 'hst_f06', hostname: 'db-1', os: 'linux', agentVersion: '1.2.0', tags: { 'role=x': 'y' }, heartbeat: AT + 20, stream: true },
  { id: 'hst_f07', hostname: 'DB-2', os: 'windows', agentVersion: '1.1.0', tags: { role: 'db' }, approvedAs: 'revoked', heartbeat: AT + 5 },
  { id: 'hst_f08', hostname: 'back\\slash', os: 'linux', agentVersion: '1.2.0', tags: {}, heartbeat: AT + 40 },
  { id: 'hst_f09', hostname: 'web-01', os: 'linux', agentVersion: '1.2.0', tags: { role: 'web' }, approvedAs: 'rejected' },
  { id: 'hst_f10', hostname: 'mail', os: 'darwin', agentVersion: '1.0.0', tags: { role: 'mail' }, heartbeat: AT + 10 },
  { id: 'hst_f11', hostname: 'gone-web', os: 'linux', agentVersion: '1.2.0', tags: { role: 'web' }, heartbeat: AT + 50 },
];
/** Enrolment times with ties (several hosts enrolled in the same millisecond). */
const enrolledAt = (index: number): number => AT - 1_000 + (index % 4) * 100;

async function fleet(backend: OpenBackend): Promise<World> {
  const w = await world(backend);
  for (const [index, { id, stream: streams, heartbeat, approvedAs, ...fields }] of FLEET.entries()) {
    await w.hosts.insert(newHost(id, { ...fields, approval: approvedAs ?? 'active', enrolledAt: enrolledAt(index) }));
    if (heartbeat !== undefined) await w.hosts.recordHeartbeats([{ hostId: id, receivedAt: heartbeat, intervalSecs: 30, agentVersion: fields.agentVersion!, cpuPercent: 1, memoryPercent: 1, diskPercent: 1, uptimeSeconds: 1, clockOffsetMs: null }]);
    if (streams) await stream(w, id, 'live');
  }
  // A deleted host matches nothing.
  await w.hosts.markDeleted('hst_f11', AT, 'admin');
  return w;
}

conformance('host pages filter by status, OS, tag, agent version and a literal case-blind hostname search, and count the matches', async (backend) => {
  const w = await fleet(backend);
  const ids = async (filter: HostFilter) => {
    const page = await w.hosts.page(ORG, filter, { key: 'enrolled', descending: false }, 500, 0, NOW);
    assert.equal(page.total, page.hosts.length);
    return page.hosts.map((host) => host.id).sort();
  };
  assert.deepEqual(await ids({}), FLEET.map((host) => host.id).filter((id) => id !== 'hst_f11'), 'the deleted host is never listed');
  assert.deepEqual(await ids({ status: 'online' }), ['hst_f01', 'hst_f06']);
  assert.deepEqual(await ids({ status: 'offline' }), ['hst_f02', 'hst_f03', 'hst_f08', 'hst_f10']);
  assert.deepEqual(await ids({ status: 'never-connected' }), ['hst_f05']);
  assert.deepEqual(await ids({ status: 'deleted' }), []);
  assert.deepEqual(await ids({ os: 'windows' }), ['hst_f02', 'hst_f07']);
  assert.deepEqual(await ids({ agentVersion: '1.1.0' }), ['hst_f03', 'hst_f07']);
  assert.deepEqual(await ids({ tag: { key: 'role', value: 'web' } }), ['hst_f01', 'hst_f02', 'hst_f09'], 'a tag value matches exactly, case included');
  assert.deepEqual(await ids({ tag: { key: 'role' } }), ['hst_f01', 'hst_f02', 'hst_f03', 'hst_f05', 'hst_f07', 'hst_f09', 'hst_f10']);
  assert.deepEqual(await ids({ tag: { key: 'role=x', value: 'y' } }), ['hst_f06']);
  assert.deepEqual(await ids({ tag: { key: 'site', value: 'ber' }, os: 'linux', status: 'online' }), ['hst_f01'], 'every filter given must match');
  assert.deepEqual(await ids({ hostnameContains: 'web' }), ['hst_f01', 'hst_f02', 'hst_f03', 'hst_f04', 'hst_f05', 'hst_f09']);
  assert.deepEqual(await ids({ hostnameContains: 'WEB-0' }), ['hst_f01', 'hst_f02', 'hst_f09'], 'any case');
  assert.deepEqual(await ids({ hostnameContains: '%' }), ['hst_f04'], '% is itself');
  assert.deepEqual(await ids({ hostnameContains: 'web_' }), ['hst_f03'], '_ is itself');
  assert.deepEqual(await ids({ hostnameContains: 'b%0' }), ['hst_f04']);
  assert.deepEqual(await ids({ hostnameContains: '\\' }), ['hst_f08'], 'the escape character is itself');
  assert.deepEqual(await ids({ hostnameContains: 'nothing' }), []);
  assert.deepEqual(await ids({ hostnameContains: 'web', status: 'pending' }), ['hst_f04']);

  const beyond = await w.hosts.page(ORG, { os: 'linux' }, { key: 'hostname', descending: false }, 5, 100, NOW);
  assert.deepEqual([beyond.hosts, beyond.total], [[], 6], 'a page past the end is empty and still counts the matches');
});

/** Each sort key's value for a host of FLEET, as the page compares them. */
function sortValue(host: Host, key: (typeof HOST_SORT_KEYS)[number], online: ReadonlySet<string>): string | number | null {
  switch (key) {
    case 'hostname':
      return host.hostname.toLowerCase();
    case 'status':
      return viewedStatus(host, online);
    case 'last_seen':
      return host.lastHeartbeatAt;
    case 'os':
      return host.os;
    case 'version':
      return host.agentVersion;
    case 'enrolled':
      return host.enrolledAt;
  }
}

conformance('host pages sort by every key both ways, ties broken by id, and page through every host exactly once', async (backend) => {
  const w = await fleet(backend);
  const everyone = await w.hosts.page(ORG, {}, { key: 'enrolled', descending: false }, 500, 0, NOW);
  for (const key of HOST_SORT_KEYS) {
    const ascending = [...everyone.hosts].sort((a, b) => compare(sortValue(a, key, everyone.online), sortValue(b, key, everyone.online)) || compare(a.id, b.id)).map((host) => host.id);
    for (const descending of [false, true]) {
      for (const size of [1, 3, 4, 500]) {
        const paged = await allPages(w, {}, { key, descending }, size);
        assert.deepEqual(paged.ids, descending ? [...ascending].reverse() : ascending, `${descending ? '-' : ''}${key} by ${size}`);
        assert.equal(paged.total, ascending.length);
      }
    }
  }
  const lastSeen = (await w.hosts.page(ORG, {}, { key: 'last_seen', descending: true }, 500, 0, NOW)).hosts.map((host) => host.lastHeartbeatAt);
  assert.deepEqual(lastSeen.slice(-3), [null, null, null], 'hosts never heard from come last when the most recent are first');
  const byName = (await w.hosts.page(ORG, { hostnameContains: 'web-0' }, { key: 'hostname', descending: false }, 500, 0, NOW)).hosts.map((host) => host.id);
  assert.deepEqual(byName, ['hst_f01', 'hst_f09', 'hst_f02'], 'case-blind: WEB-02 after both web-01, which tie and go by id');
});

conformance("the console's change mark moves when a host enrols, is decided, is deleted, or a stream opens or closes; not for a pending agent's polls or a heartbeat", async (backend) => {
  const w = await world(backend);
  const marks: string[] = [];
  const mark = async (what: string, moved: boolean) => {
    const now = await w.hosts.changeMark(ORG, NOW);
    if (marks.length > 0) assert.equal(now !== marks.at(-1), moved, what);
    marks.push(now);
  };
  await mark('start', true);
  await w.hosts.insert(newHost('hst_m1', { approval: 'pending' }));
  await mark('a host enrolled', true);
  await mark('nothing happened', false);
  await w.hosts.updateRegistration('hst_m1', { hostname: 'hst_m1.example', machineFingerprint: 'fp-hst_m1', os: 'linux', arch: 'x64', agentVersion: '1.0.0', at: AT + 1 });
  await mark("a pending agent's Register again (it polls every few seconds)", false);
  await w.hosts.decide('hst_m1', 'active', ['pending'], AT + 1, 'admin');
  await mark('approved', true);
  await w.instances.claimStream('hst_m1', 'ins_live', 'str-m1', undefined, NOW - 5);
  await mark('a stream opened', true);
  await w.hosts.recordHeartbeats([{ hostId: 'hst_m1', receivedAt: NOW - 1, intervalSecs: 30, agentVersion: '1.0.0', cpuPercent: 1, memoryPercent: 1, diskPercent: 1, uptimeSeconds: 1, clockOffsetMs: null }]);
  await mark('a heartbeat (status unchanged)', false);
  await w.instances.releaseStream('hst_m1', 'ins_live', 'str-m1');
  await mark('the stream closed', true);
  await w.hosts.markDeleted('hst_m1', AT + 9, 'admin');
  await mark('deleted', true);
});

conformance('vitals as chart columns: averaged into whole buckets of the window, oldest first, nothing outside it', async (backend) => {
  await backend.kysely.insertInto('organisations').values({ id: ORG, name: 'p', created_at: AT }).execute();
  await new HostStore(backend.kysely, backend.name).insert(newHost('hst_v1'));
  const vitals = new HostVitalsStore(backend.kysely);
  const sample = (at: number, cpu: number) => ({ hostId: 'hst_v1', receivedAt: at, agentTimestamp: at, cpuPercent: cpu, memoryPercent: 50, diskPercent: 10, uptimeSeconds: 1 });
  // Buckets of 60 s from 1,000,000: [0, 60 s) holds two samples, [120 s, 180 s) one; one before the window, one after.
  await vitals.insertMany([sample(999_000, 99), sample(1_000_000, 10), sample(1_030_000, 20), sample(1_150_000, 40), sample(1_300_001, 99)]);
  const series = await vitals.series('hst_v1', 1_000_000, 1_300_000, 60_000);
  assert.deepEqual(series, { at: [1_030_000, 1_150_000], cpu: [15, 40], memory: [50, 50], disk: [10, 10] });
});
