import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { httpsJson } from './helpers/https.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { waitFor } from './helpers/wait.ts';

/** The key and CA files a second instance shares with the first (docs/operations.md, "Adding an ingest instance"). */
const SHARED_FILES = ['ca.crt', 'ca.key', 'jwt-signing.key', 'bundle.key', 'bundle.pub', 'admin-cli.token'];

/** A data directory for a second instance: the first's keys and CA, nothing else (its own server certificate is made at start). */
function provisionFrom(first: TestAppliance): string {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-instance-b-'));
  for (const name of SHARED_FILES) copyFileSync(join(first.dataDir, name), join(dir, name));
  return dir;
}

// Two real appliance processes on one private PostgreSQL cluster, and real agents: what one
// instance decides reaches an agent streaming to the other, through LISTEN/NOTIFY.
describe('two ingest instances on one PostgreSQL', () => {
  let a: TestAppliance;
  let b: TestAppliance;
  let dirB: string;
  let url: string;
  const agents: TestAgent[] = [];

  before(async () => {
    url = await (await sharedPostgres()).createDatabase('two_instances');
    a = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_DATABASE: url } });
    dirB = provisionFrom(a);
    b = await TestAppliance.start({ dataDir: dirB, env: { CT_OPS_APPLIANCE_DATABASE: url } });
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await Promise.all([a?.dispose(), b?.dispose()]);
    rmSync(dirB, { recursive: true, force: true });
    await (await sharedPostgres()).stop();
  });

  function agentOf(instance: TestAppliance, orgToken: string): TestAgent {
    const agent = new TestAgent({ address: instance.address, caCertFile: a.caCertPath, orgToken, intervalSecs: 5 });
    agents.push(agent);
    return agent;
  }

  test('enrol through one, approve through the other; both show it online; a task queued through either reaches it; revoking through the other closes its stream', { timeout: 120_000 }, async () => {
    const { token } = await a.createToken();
    const agent = agentOf(b, token);
    const proc = agent.start();
    const response = await proc.waitForLog('registration response');
    const hostId = String(response.agent_id);
    assert.equal((await a.host(hostId)).status, 'pending', 'enrolled through B, seen through A');
    assert.equal((await a.cli('hosts', 'approve', hostId)).code, 0, 'approved through A');
    await proc.waitForLog('heartbeat acknowledged', {}, 20_000);
    assert.equal((await b.host(hostId)).status, 'online', 'B holds the stream');
    assert.equal((await a.host(hostId)).status, 'online', 'A knows it is online: host_streams names a live instance');

    // A task queued through A, for a host streaming to B: A tells B (tasks-queued), B sends it.
    agent.writeConfig({ address: b.address, caCertFile: a.caCertPath, orgToken: token, intervalSecs: 6 });
    const queuedThroughA = await a.cliJson<{ id: string }>('hosts', 'reload-config', hostId);
    const done = await waitFor('the task queued through A succeeded', async () => {
      const shown = await a.cliJson<{ state: string; output: string }>('tasks', 'show', queuedThroughA.id);
      return shown.state === 'succeeded' && shown;
    }, 30_000);
    assert.equal(done.output, 'heartbeat_interval_secs=6');
    // And one through B, the instance holding the stream.
    const queuedThroughB = await b.cliJson<{ id: string }>('hosts', 'reload-config', hostId);
    await waitFor('the task queued through B succeeded', async () => (await b.cliJson<{ state: string }>('tasks', 'show', queuedThroughB.id)).state === 'succeeded', 30_000);
    assert.equal(proc.logged('heartbeat stream opened').length, 1, 'one stream all along: nothing needed a reconnect');

    // Revoked through A: A tells B (host-closed), B closes the stream, the agent stops as revoked.
    assert.equal((await a.cli('hosts', 'revoke', hostId)).code, 0);
    const exit = await Promise.race([proc.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the agent did not stop within 20 s')), 20_000).unref())]);
    assert.equal(exit.code, 77, 'the agent stopped as revoked instead of retrying');
    assert.ok(b.process.events.some((event) => event.msg === 'host offline' && event.host_id === hostId && event.reason === 'revoked'), 'B closed the stream as revoked');
    assert.notEqual((await a.host(hostId)).status, 'online');
    assert.notEqual((await b.host(hostId)).status, 'online');
  });

  test('certs status on either instance counts a host streaming to the other as online; a CA rotation is refused while another instance serves', { timeout: 120_000 }, async () => {
    const { token } = await a.createToken('--auto-approve');
    const agent = agentOf(b, token);
    await agent.start().waitForLog('heartbeat acknowledged', {}, 20_000);
    type Status = { hosts: { online_with_bundle: number; online_without: number } };
    const onlineAt = (status: Status) => status.hosts.online_with_bundle + status.hosts.online_without;
    const [throughA, throughB] = [await a.cliJson<Status>('certs', 'status'), await b.cliJson<Status>('certs', 'status')];
    assert.equal(onlineAt(throughA), onlineAt(throughB), 'the same count through either instance');
    assert.equal(onlineAt(throughA), 1, 'the host B holds is online through A too (the only host streaming)');

    const refused = await a.cli('certs', 'rotate-ca', 'start');
    assert.equal(refused.code, 75, refused.stderr);
    assert.match(refused.stderr, /ERR_CA_ROTATION_INSTANCES/);
    assert.equal((await b.cliJson<{ phase: string }>('certs', 'status')).phase, 'standby', 'nothing started on either');
    assert.equal((await a.cliJson<{ phase: string }>('certs', 'status')).phase, 'standby');
  });

  test('two machines using one copied identity, each streaming to another instance, are flagged instead of displacing each other', { timeout: 120_000 }, async () => {
    const { token } = await a.createToken('--auto-approve');
    const first = agentOf(a, token);
    await first.start().waitForLog('heartbeat acknowledged', {}, 20_000);
    const hostId = first.state().agent_id;
    // A cloned disk on another machine (its own machine id), whose agent reaches the other instance.
    const clone = agentOf(b, token);
    cpSync(first.dataDir, clone.dataDir, { recursive: true });
    const second = clone.start();
    const flagged = await waitFor('the host flagged', async () => {
      const shown = await a.cliJson<{ status: string; identity_claimants: unknown[] }>('hosts', 'show', hostId);
      return shown.status === 'identity-conflict' && shown;
    }, 30_000);
    assert.equal(flagged.identity_claimants.length, 2, 'both machines recorded, whichever instance saw them');
    // B judged the clone against the stream A holds (host_streams): refused, A's stream kept.
    await second.waitForLog('heartbeat stream closed', { error_code: 'ERR_HOST_IDENTITY_CONFLICT' }, 30_000);
    assert.equal(first.process!.logged('heartbeat stream opened').length, 1, "the first machine's stream on A was never displaced");
    assert.equal((await b.host(hostId)).status, 'identity-conflict');
  });

  test('an instance frozen past its lease is taken for dead: its agent moves on; thawed, it finds out, regains its lease and gives up the stale stream without taking the host offline', { timeout: 120_000 }, async () => {
    const { token } = await a.createToken('--auto-approve');
    const agent = new TestAgent({ address: '', addresses: [b.address, a.address], caCertFile: a.caCertPath, orgToken: token, intervalSecs: 5 });
    agents.push(agent);
    const proc = agent.start();
    await proc.waitForLog('heartbeat acknowledged', {}, 20_000);
    const hostId = agent.state().agent_id;
    process.kill(b.process.child.pid!, 'SIGSTOP');
    try {
      // Unacknowledged, the agent reconnects to the next address; B's lease runs out meanwhile.
      await proc.waitForLog('heartbeat stream opened', { address_index: 1 }, 40_000);
      await waitFor('A shows the host online', async () => (await a.host(hostId)).status === 'online', 20_000, 250);
      // Frozen past its 15 s lease, so A's lost-stream pass has taken it for dead.
      await new Promise((resolve) => setTimeout(resolve, 16_000));
    } finally {
      process.kill(b.process.child.pid!, 'SIGCONT');
    }
    await b.process.waitForLog('this instance had been taken for dead (its lease ran out); its streams are claimed again', {}, 20_000);
    // B's stale stream ended (or is given up): the host stays online through A, never recorded offline.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal((await a.host(hostId)).status, 'online');
    assert.equal((await b.host(hostId)).status, 'online', 'B agrees: the row names A');
    // A may have taken it offline with B (instance-lost) before the agent reached A, never after.
    const openedAtA = a.process.logged('heartbeat stream opened', { host_id: hostId }).at(-1)!.time as number;
    for (const offline of a.process.logged('host offline', { host_id: hostId })) {
      assert.equal(offline.reason, 'instance-lost');
      assert.ok((offline.time as number) <= openedAtA, 'not after its stream to A opened');
    }
    assert.equal(b.process.logged('host offline', { host_id: hostId }).length, 0, 'B did not take it offline when its stale stream ended');
  });

  test('an instance killed with SIGKILL: its agents that list another instance reconnect there and take tasks; a host whose agent knows no other goes offline on the others within the lease (15 s)', { timeout: 120_000 }, async () => {
    // B was frozen by the test before: the listing agent must find it serving again (healthy, hearing
    // the other instance) before it starts, or under load it may move on to A before this test's kill.
    await waitFor('B serving again', async () => {
      const health = await httpsJson(b.httpPort, b.caCert, 'GET', '/healthz');
      return health.status === 200 && health.body.instances?.listening === true;
    }, 30_000, 250);
    const { token } = await a.createToken('--auto-approve', '--max-uses', '2');
    const listing = new TestAgent({ address: '', addresses: [b.address, a.address], caCertFile: a.caCertPath, orgToken: token, intervalSecs: 5 });
    agents.push(listing);
    const lone = agentOf(b, token);
    const loneProc = lone.start();
    // The precondition: the listing agent streams to B, its first address, when B is killed. Under
    // load B (thawed just before) may answer its first attempt too late, and the agent rightly moves
    // on to A: it is then started again, at most twice, until it is on B.
    let listingProc = listing.start();
    for (let start = 1; ; start += 1) {
      await listingProc.waitForLog('heartbeat acknowledged', {}, 20_000);
      if (listingProc.logged('heartbeat stream opened', { address_index: 0 }).length === 1) break;
      assert.ok(start < 3, `the listing agent reached B, the first address of its list, within three starts: ${JSON.stringify(listingProc.logged('heartbeat stream opened'))}`);
      await listing.stop();
      listingProc = listing.start();
    }
    await loneProc.waitForLog('heartbeat acknowledged', {}, 20_000);
    const [listingId, loneId] = [listing.state().agent_id, lone.state().agent_id];
    assert.equal((await a.host(loneId)).status, 'online');

    const killedAt = Date.now();
    await b.process.stop('SIGKILL');
    // The listing agent moves to A, the next address; A claims its stream, and tasks reach it there.
    await listingProc.waitForLog('heartbeat stream opened', { address_index: 1 }, 30_000);
    await waitFor('A shows the listing host online', async () => (await a.host(listingId)).status === 'online', 20_000, 250);
    listing.writeConfig({ address: '', addresses: [b.address, a.address], caCertFile: a.caCertPath, orgToken: token, intervalSecs: 6 });
    const queued = await a.cliJson<{ id: string }>('hosts', 'reload-config', listingId);
    await waitFor('the task reached the agent on A', async () => (await a.cliJson<{ state: string }>('tasks', 'show', queued.id)).state === 'succeeded', 30_000);

    // The lone agent keeps trying B: its host goes offline on A once B's lease runs out.
    await waitFor('A shows the lone host offline', async () => (await a.host(loneId)).status !== 'online', 30_000, 250);
    const offlineAfterMs = Date.now() - killedAt;
    // The lease (15 s) plus one renewal period of slack; the heartbeat deadline would be 10 s here, the default 60 s.
    assert.ok(offlineAfterMs <= 20_000, `offline after ${offlineAfterMs} ms`);
    await a.process.waitForLog('host offline', { host_id: loneId, reason: 'instance-lost' }, 15_000);
    assert.notEqual((await a.host(loneId)).last_disconnected_at, null, "A's lost-stream pass did the offline bookkeeping");
    assert.equal(a.process.logged('host offline', { host_id: listingId, reason: 'instance-lost' }).length, 0, 'a host streaming to A again is not taken offline by the pass');
    assert.equal((await a.host(listingId)).status, 'online');
    b = await TestAppliance.start({ dataDir: dirB, env: { CT_OPS_APPLIANCE_DATABASE: url } });
  });
});
