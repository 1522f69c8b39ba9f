/**
 * Agent update rollouts on a real appliance, with agents played over the real gRPC stream: the offer
 * in the heartbeat ack (only to a started group, only below the target, never where the version
 * rolled back), the download over HTTPS with the agent's JWT (Range resumes, nothing else served),
 * the next group started once the first is healthy, a rollback halting the rollout.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { publicKeyFile, signingKeyFromSeed } from '../common/minisign.ts';
import type { HeartbeatResponse__Output } from '../common/proto.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { tempDir, writeReleaseDir } from './helpers/bundler-fixtures.ts';
import type { HeartbeatStream } from './helpers/ingest-client.ts';
import { useIngestFixture, type Enrolled } from './helpers/ingest-fixture.ts';
import { waitFor } from './helpers/wait.ts';

const releaseKey = signingKeyFromSeed(randomBytes(32));
const work = tempDir('ct-ops-rollouts-');
const releasePub = join(work, 'release.pub');
writeFileSync(releasePub, publicKeyFile(releaseKey, 'CT-Ops test release key'));

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

describe('agent update rollouts: offer, download, groups, rollback', () => {
  // One download at a time at 2 MiB/s: the limits are seen with files of a few MiB.
  const ingest = useIngestFixture({ args: ['--release-public-key-file', releasePub], env: { CT_OPS_APPLIANCE_AGENT_DOWNLOAD_CONCURRENCY: '1', CT_OPS_APPLIANCE_AGENT_DOWNLOAD_RATE_MIB: '2' } });
  after(() => rmSync(work, { recursive: true, force: true }));

  /** An HTTPS GET on the appliance's HTTPS port, trusting its CA. */
  const get = (port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request({ host: 'localhost', port, path, method: 'GET', ca: ingest.appliance.caCert, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end();
    });

  /**
   * The ack of heartbeat `sequence` on `stream`, sent with the agent at `agentVersion` (and an update
   * status, if given). At a 60 s interval: the two streams live through every test, and one left silent
   * for a few slow tests must not be ended by presence as silent (two intervals) before its next heartbeat.
   */
  async function heartbeat(stream: HeartbeatStream, host: Enrolled, sequence: number, agentVersion: string, extra: Record<string, unknown> = {}): Promise<HeartbeatResponse__Output['ack']> {
    stream.send(host.hostId, sequence, { agent_version: agentVersion, interval_secs: 60, ...extra });
    const ack = await waitFor(`ack ${sequence}`, () => stream.received.find((message) => message.kind === 'ack' && Number(message.ack!.sequence) === sequence));
    return ack.ack;
  }

  let canary: Enrolled;
  let rest: Enrolled;
  let canaryStream: HeartbeatStream;
  let restStream: HeartbeatStream;
  let releaseDir: string;

  it('offers nothing before a rollout; offers the first group only once one starts, below the target only', async () => {
    releaseDir = writeReleaseDir(mkdtempSync(join(work, 'media-')), releaseKey, { version: '1.1.0', bytes: 3 << 20 });
    const imported = await ingest.appliance.cli('releases', 'import', releaseDir);
    assert.equal(imported.code, 0, imported.stderr);
    canary = await ingest.enrol({ hostname: 'canary-1' });
    rest = await ingest.enrol({ hostname: 'rest-1' });
    canaryStream = await ingest.openStream(canary.hostId, canary.jwt);
    restStream = await ingest.openStream(rest.hostId, rest.jwt);
    assert.equal((await heartbeat(canaryStream, canary, 2, '1.0.0'))!.update_offer, null, 'no rollout: no offer');

    const started = await ingest.appliance.cliJson<{ id: string; state: string; groups: Array<{ name: string; started_at: string | null }> }>(
      'releases', 'rollout', '1.1.0', '--group', `canary=hosts:${canary.hostId}@100`, '--group', 'everyone=all',
    );
    assert.equal(started.state, 'running');
    assert.deepEqual(started.groups.map((group) => [group.name, group.started_at !== null]), [['canary', true], ['everyone', false]]);

    const offer = (await heartbeat(canaryStream, canary, 3, '1.0.0'))!.update_offer!;
    const sums = readFileSync(join(releaseDir, 'SHA256SUMS'), 'utf8');
    assert.equal(offer.version, '1.1.0');
    assert.equal(offer.file_name, 'ct-ops-agent-linux-x64', 'the executable of the host\'s registered os/arch');
    assert.ok(sums.includes(`${offer.sha256}  ${offer.file_name}\n`), 'the offer names the signed SHA-256');
    assert.equal(offer.download_path, '/agent/v1/releases/1.1.0/');
    assert.equal(offer.https_port, ingest.appliance.httpPort);
    assert.equal((await heartbeat(restStream, rest, 2, '1.0.0'))!.update_offer, null, 'the second group has not started');
    assert.equal((await heartbeat(canaryStream, canary, 4, '1.1.0'))!.update_offer, null, 'at the target: no offer');
    assert.equal((await heartbeat(canaryStream, canary, 5, '1.0.0-dev'))!.update_offer, null, 'a version that is not MAJOR.MINOR.PATCH is left alone');
    const status = await ingest.appliance.cliJson<{ hosts: Array<{ host_id: string; phase: string | null; group: string }> }>('releases', 'status');
    assert.deepEqual(status.hosts.find((entry) => entry.host_id === canary.hostId), { ...status.hosts.find((entry) => entry.host_id === canary.hostId), phase: 'offered', group: 'canary' });
  });

  it('serves the offered release over HTTPS to an agent with its JWT only, resumes with Range, and serves nothing else', async () => {
    const port = ingest.appliance.httpPort;
    const auth = { authorization: `Bearer ${canary.jwt}` };
    const name = 'ct-ops-agent-linux-x64';
    const expected = readFileSync(join(releaseDir, name));
    const whole = await get(port, `/agent/v1/releases/1.1.0/${name}`, auth);
    assert.equal(whole.status, 200);
    assert.equal(createHash('sha256').update(whole.body).digest('hex'), createHash('sha256').update(expected).digest('hex'));
    assert.equal(whole.headers['accept-ranges'], 'bytes');

    // An interrupted download resumes from where it stopped.
    const from = 1_000_003;
    const resumed = await get(port, `/agent/v1/releases/1.1.0/${name}`, { ...auth, range: `bytes=${from}-` });
    assert.equal(resumed.status, 206);
    assert.equal(resumed.headers['content-range'], `bytes ${from}-${expected.length - 1}/${expected.length}`);
    assert.ok(resumed.body.equals(expected.subarray(from)));
    const beyond = await get(port, `/agent/v1/releases/1.1.0/${name}`, { ...auth, range: `bytes=${expected.length + 10}-` });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], `bytes */${expected.length}`);

    // The limits: served at the shared rate (3 MiB at 2 MiB/s takes over a second), one at a time.
    const started = Date.now();
    const first = get(port, `/agent/v1/releases/1.1.0/${name}`, auth);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const busy = await get(port, `/agent/v1/releases/1.1.0/${name}`, auth);
    assert.equal(busy.status, 503);
    // About how long until the place frees: the downloads so far held it a second or two each.
    const retryAfter = Number(busy.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 5, `Retry-After ${busy.headers['retry-after']}`);
    assert.equal((JSON.parse(busy.body.toString()) as { error: { code: string } }).error.code, 'ERR_DOWNLOAD_BUSY');
    assert.equal((await first).body.length, expected.length);
    assert.ok(Date.now() - started >= 1_000, `3 MiB at 2 MiB/s took ${Date.now() - started} ms`);

    // Agents that go away mid-download give their place back (three cuts with one place).
    for (let cut = 0; cut < 3; cut += 1) {
      await new Promise<void>((resolve, reject) => {
        const req = request({ host: 'localhost', port, path: `/agent/v1/releases/1.1.0/${name}`, ca: ingest.appliance.caCert, headers: auth }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? resolve() : reject(error)));
        req.end();
      });
    }
    const after = await waitFor('a place free again', async () => {
      const answer = await get(port, `/agent/v1/releases/1.1.0/SHA256SUMS`, auth);
      return answer.status === 200 ? answer : undefined;
    });
    assert.equal(after.status, 200);

    for (const file of ['SHA256SUMS', 'SHA256SUMS.minisig']) {
      const answer = await get(port, `/agent/v1/releases/1.1.0/${file}`, auth);
      assert.equal(answer.status, 200, file);
      assert.ok(answer.body.equals(readFileSync(join(releaseDir, file))), file);
    }
    const refusals: Array<[string, Record<string, string>, number, string]> = [
      [`/agent/v1/releases/1.1.0/${name}`, {}, 401, 'ERR_JWT_MISSING'],
      [`/agent/v1/releases/1.1.0/${name}`, { authorization: 'Bearer not.a.jwt' }, 401, 'ERR_JWT_INVALID'],
      ['/agent/v1/releases/1.1.0/release.pub', auth, 404, 'ERR_RELEASE_NOT_FOUND'],
      ['/agent/v1/releases/1.1.0/..%2f..%2fca.key', auth, 400, 'ERR_INVALID_ARGUMENT'],
      ['/agent/v1/releases/9.9.9/SHA256SUMS', auth, 404, 'ERR_RELEASE_NOT_FOUND'],
    ];
    for (const [path, headers, status, code] of refusals) {
      const answer = await get(port, path, headers);
      assert.equal(answer.status, status, `${path}: ${answer.body.toString()}`);
      assert.equal((JSON.parse(answer.body.toString()) as { error: { code: string } }).error.code, code, path);
    }
  });

  it('starts the next group once the first is healthy; a rollback there halts the rollout and the version is not offered to that host again', async () => {
    const healthy = { update_status: { version: '1.1.0', phase: 'UPDATE_PHASE_HEALTHY', error_code: '', message: '' } };
    await heartbeat(canaryStream, canary, 6, '1.1.0', healthy);
    const offer = await waitFor('the second group offered', async () => (await heartbeat(restStream, rest, Date.now() % 1_000_000 + 10, '1.0.0'))!.update_offer ?? undefined, 15_000, 300);
    assert.equal(offer.version, '1.1.0');

    const rolledBack = { update_status: { version: '1.1.0', phase: 'UPDATE_PHASE_ROLLED_BACK', error_code: 'ERR_INTERNAL', message: 'the new agent exited at start' } };
    await heartbeat(restStream, rest, 2_000_001, '1.0.0', rolledBack);
    const status = await ingest.appliance.cliJson<{ rollout: { state: string; halted_reason: string }; hosts: Array<{ host_id: string; phase: string; error_code: string; detail: string }> }>('releases', 'status');
    assert.equal(status.rollout.state, 'halted');
    assert.match(status.rollout.halted_reason, new RegExp(rest.hostId));
    const reported = status.hosts.find((entry) => entry.host_id === rest.hostId)!;
    assert.deepEqual([reported.phase, reported.error_code, reported.detail], ['rolled_back', 'ERR_INTERNAL', 'the new agent exited at start']);
    assert.equal((await heartbeat(restStream, rest, 2_000_002, '1.0.0'))!.update_offer, null, 'halted: nothing offered');

    const resumed = await ingest.appliance.cliJson<{ state: string }>('releases', 'resume');
    assert.equal(resumed.state, 'running');
    assert.equal((await heartbeat(restStream, rest, 2_000_003, '1.0.0'))!.update_offer, null, 'resumed, but the version rolled back on this host');
    // Resumed past the rollback: the blocked host is out of the threshold, so the last group is met and the rollout completes.
    await waitFor('the rollout completed', async () => (await ingest.appliance.cliJson<{ rollout: { state: string } }>('releases', 'status')).rollout.state === 'completed');
    const cleared = await ingest.appliance.cliJson<{ cleared: number }>('releases', 'clear-rollback', '1.1.0', '--host', rest.hostId);
    assert.equal(cleared.cleared, 1);
    assert.equal((await heartbeat(restStream, rest, 2_000_004, '1.0.0'))!.update_offer?.version, '1.1.0', 'cleared: offered again (a completed rollout still offers its target)');

    // An agent that refused the offer (or could not complete it) is not offered it again.
    const failed = { update_status: { version: '1.1.0', phase: 'UPDATE_PHASE_FAILED', error_code: 'ERR_UPDATE_SIGNATURE_INVALID', message: 'not signed by the pinned key' } };
    await heartbeat(restStream, rest, 2_000_010, '1.0.0', failed);
    assert.equal((await heartbeat(restStream, rest, 2_000_011, '1.0.0'))!.update_offer, null, 'failed: not offered again');
    await ingest.appliance.cliJson('releases', 'clear-rollback', '1.1.0', '--host', rest.hostId);
    assert.equal((await heartbeat(restStream, rest, 2_000_012, '1.0.0'))!.update_offer?.version, '1.1.0', 'cleared: offered again');

    // A malformed report is refused (logged) and the heartbeat still acknowledged; the stream goes on.
    const bad = { update_status: { version: '1.1', phase: 'UPDATE_PHASE_HEALTHY', error_code: '', message: '' } };
    assert.ok(await heartbeat(restStream, rest, 2_000_005, '1.0.0', bad));
    assert.ok(await heartbeat(restStream, rest, 2_000_006, '1.0.0'));
  });

  it('refuses rollouts of what was not imported or is retired, and of a group that holds no host; a retired release is offered and served no more', async () => {
    const emptyGroup = await ingest.appliance.cli('releases', 'rollout', '1.1.0', '--group', 'canary=tag:ring=canray', '--group', 'everyone=all');
    assert.match(emptyGroup.stderr, /ERR_INVALID_ARGUMENT.*holds no active host/);
    const missing = await ingest.appliance.cli('releases', 'rollout', '7.7.7');
    assert.match(missing.stderr, /ERR_RELEASE_NOT_FOUND/);
    const badGroup = await ingest.appliance.cli('releases', 'rollout', '1.1.0', '--group', 'x=tags:a');
    assert.match(badGroup.stderr, /ERR_USAGE/);
    assert.equal((await heartbeat(restStream, rest, 3_000_001, '1.0.0'))!.update_offer?.version, '1.1.0', 'offered before retiring');
    await ingest.appliance.cliJson('releases', 'retire', '1.1.0');
    assert.equal((await heartbeat(restStream, rest, 3_000_002, '1.0.0'))!.update_offer, null, 'retired: offered no more');
    const download = await get(ingest.appliance.httpPort, '/agent/v1/releases/1.1.0/SHA256SUMS', { authorization: `Bearer ${rest.jwt}` });
    assert.equal(download.status, 404, 'retired: served no more');
    const retired = await ingest.appliance.cli('releases', 'rollout', '1.1.0');
    assert.match(retired.stderr, /ERR_RELEASE_NOT_FOUND.*retired/);
    const paused = await ingest.appliance.cli('releases', 'pause');
    assert.match(paused.stderr, /ERR_ROLLOUT_NOT_FOUND/, 'nothing open to pause (the rollout completed)');
  });

  it('a minimum version is offered to every host below it, whatever the rollout and its groups; cleared, it is offered no more', async () => {
    const newer = writeReleaseDir(mkdtempSync(join(work, 'media-')), releaseKey, { version: '1.2.0', bytes: 4096 });
    assert.equal((await ingest.appliance.cli('releases', 'import', newer)).code, 0);
    const started = await ingest.appliance.cli('releases', 'rollout', '1.2.0', '--group', `canary=hosts:${canary.hostId}`);
    assert.equal(started.code, 0, started.stderr);
    assert.equal((await heartbeat(canaryStream, canary, 4_000_001, '1.0.0'))!.update_offer?.version, '1.2.0', 'the rollout offers its group');
    assert.equal((await heartbeat(restStream, rest, 4_000_002, '1.0.0'))!.update_offer, null, 'no group holds this host');

    const set = await ingest.appliance.cliJson<{ version: string; set_by: string }>('releases', 'minimum', '1.2.0');
    assert.deepEqual([set.version, set.set_by], ['1.2.0', 'admin']);
    assert.equal((await ingest.appliance.cliJson<{ version: string }>('releases', 'minimum')).version, '1.2.0');
    assert.equal((await heartbeat(restStream, rest, 4_000_003, '1.0.0'))!.update_offer?.version, '1.2.0', 'below the minimum: offered, outside every group');
    assert.equal((await heartbeat(restStream, rest, 4_000_004, '1.2.0'))!.update_offer, null, 'at the minimum: nothing');

    const retired = await ingest.appliance.cli('releases', 'minimum', '1.1.0');
    assert.match(retired.stderr, /ERR_RELEASE_NOT_FOUND.*retired/);
    const unknown = await ingest.appliance.cli('releases', 'minimum', '9.9.9');
    assert.match(unknown.stderr, /ERR_RELEASE_NOT_FOUND/);
    assert.equal((await ingest.appliance.cliJson<{ version: string | null }>('releases', 'minimum', '--clear')).version, null);
    assert.equal((await heartbeat(restStream, rest, 4_000_005, '1.0.0'))!.update_offer, null, 'cleared: offered no more');
  });

  it("a group is offered its release only inside its maintenance window; a window that cannot be is refused", async () => {
    const release = writeReleaseDir(mkdtempSync(join(work, 'media-')), releaseKey, { version: '1.3.0', bytes: 4096 });
    assert.equal((await ingest.appliance.cli('releases', 'import', release)).code, 0);
    /** HH:MM (UTC) `hours` from now: daily windows around or away from the test's own time. */
    const utc = (hours: number): string => new Date(Date.now() + hours * 3_600_000).toISOString().slice(11, 16);

    const later = `${utc(6)}-${utc(7)}`;
    const closed = await ingest.appliance.cliJson<{ groups: Array<{ maintenance_window: string | null }> }>(
      'releases', 'rollout', '1.3.0', '--group', `canary=hosts:${canary.hostId}@100`, '--window', `canary=${later}`,
    );
    assert.equal(closed.groups[0]!.maintenance_window, `${later} UTC`, 'stored as canonical text, the zone named');
    assert.equal((await heartbeat(canaryStream, canary, 5_000_001, '1.0.0'))!.update_offer, null, 'started, but outside its window: no offer');
    const status = await ingest.appliance.cliJson<{ groups: Array<{ name: string; window_open: boolean | null }> }>('releases', 'status');
    assert.deepEqual(status.groups.map((group) => [group.name, group.window_open]), [['canary', false]]);

    // Computed once: a minute may turn between two calls.
    const around = `${utc(-1)}-${utc(1)}`;
    const open = await ingest.appliance.cli('releases', 'rollout', '1.3.0', '--group', `canary=hosts:${canary.hostId}@100`, '--window', `canary=${around} Etc/UTC`);
    assert.equal(open.code, 0, open.stderr);
    assert.equal((await heartbeat(canaryStream, canary, 5_000_002, '1.0.0'))!.update_offer?.version, '1.3.0', 'inside its window: offered');

    for (const [window, why] of [
      ['Mon-Fri 22:00-24:30', /ERR_INVALID_ARGUMENT.*24:30 is not a time of day/],
      ['Funday 01:00-02:00', /ERR_INVALID_ARGUMENT.*"Funday" is not a day/],
      ['01:00-02:00 Mars/Olympus', /ERR_INVALID_ARGUMENT.*not a time zone/],
      ['01:00-01:00', /ERR_INVALID_ARGUMENT.*opens and closes at the same time/],
    ] as const) {
      const refused = await ingest.appliance.cli('releases', 'rollout', '1.3.0', '--group', `canary=hosts:${canary.hostId}`, '--window', `canary=${window}`);
      assert.match(refused.stderr, why, window);
    }
    const noSuchGroup = await ingest.appliance.cli('releases', 'rollout', '1.3.0', '--window', 'canary=01:00-02:00');
    assert.match(noSuchGroup.stderr, /ERR_USAGE.*no group named "canary"/);
    const current = await ingest.appliance.cliJson<{ rollout: { groups: Array<{ maintenance_window: string | null }> } }>('releases', 'status');
    assert.equal(current.rollout.groups[0]!.maintenance_window, `${around} UTC`, 'a refused rollout changed nothing');
  });

  it('an instance offers only a release whose files it holds: one lost from its data directory is offered again once imported again', async () => {
    const release = writeReleaseDir(mkdtempSync(join(work, 'media-')), releaseKey, { version: '1.4.0', bytes: 4096 });
    assert.equal((await ingest.appliance.cli('releases', 'import', release)).code, 0);
    rmSync(join(ingest.appliance.dataDir, 'releases', '1.4.0', 'ct-ops-agent-linux-x64'));
    const started = await ingest.appliance.cli('releases', 'rollout', '1.4.0', '--group', `canary=hosts:${canary.hostId}`);
    assert.equal(started.code, 0, started.stderr);
    await ingest.appliance.process.waitForLog('agent release not offered from this instance: its files are not here (import it on this instance too)', { version: '1.4.0' });
    assert.equal((await heartbeat(canaryStream, canary, 6_000_001, '1.0.0'))!.update_offer, null, 'not offered: this instance could not serve it');

    const again = await ingest.appliance.cli('releases', 'import', release);
    assert.match(again.stdout, /already imported \(same files\)/);
    assert.equal((await ingest.appliance.cli('releases', 'rollout', '1.4.0', '--group', `canary=hosts:${canary.hostId}`)).code, 0);
    assert.equal((await heartbeat(canaryStream, canary, 6_000_002, '1.0.0'))!.update_offer?.version, '1.4.0', 'its files back in place: offered');
  });

  it("a stored window this appliance cannot read (another Node's time zones wrote it) closes that group only, and the appliance still starts", async () => {
    const started = await ingest.appliance.cli('releases', 'rollout', '1.4.0', '--group', `canary=hosts:${canary.hostId}`, '--window', 'canary=00:00-24:00', '--group', 'everyone=all');
    assert.equal(started.code, 0, started.stderr);
    // What an instance whose ICU knows a zone this one does not would have stored.
    const db = new Database(join(ingest.appliance.dataDir, 'appliance.db'));
    db.pragma('busy_timeout = 5000');
    db.prepare("UPDATE rollout_groups SET maintenance_window = '00:00-24:00 Mars/Olympus_Mons' WHERE name = 'canary'").run();
    db.close();
    // A pause and a resume reload the snapshot at once (as the 30 s pass would).
    assert.equal((await ingest.appliance.cli('releases', 'pause')).code, 0);
    assert.equal((await ingest.appliance.cli('releases', 'resume')).code, 0);
    await ingest.appliance.process.waitForLog("a rollout group's maintenance window cannot be read here: the group is offered nothing until a new rollout");
    assert.equal((await heartbeat(canaryStream, canary, 7_000_001, '1.0.0'))!.update_offer, null, 'its group is closed');
    const status = await ingest.appliance.cliJson<{ groups: Array<{ name: string; maintenance_window: string | null; window_open: boolean | null }> }>('releases', 'status');
    assert.deepEqual(status.groups[0], { ...status.groups[0], name: 'canary', maintenance_window: '00:00-24:00 Mars/Olympus_Mons', window_open: false });

    // The start reads the snapshot too: it must not fail on it.
    await ingest.appliance.process.stop();
    const again = await TestAppliance.start({ dataDir: ingest.appliance.dataDir, args: ['--release-public-key-file', releasePub] });
    try {
      const restarted = await again.cliJson<{ rollout: { state: string } }>('releases', 'status');
      assert.equal(restarted.rollout.state, 'running');
    } finally {
      await again.dispose();
    }
  });
});
