/**
 * The real agent process (dist/ct-ops-agent.cjs) against a real appliance rolling out a release:
 * the offer in the ack is downloaded over HTTPS with the agent's JWT, verified against the release
 * key pinned in agent.toml, and staged for the root helper in its spool (the request line last);
 * each phase is reported on the heartbeat. A release the agent cannot trust is refused once, with
 * its code, and the agent keeps heartbeating. (The root helper's verify/swap/restart/rollback is
 * issue 12's next step; here the spool is a temporary folder.)
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { publicKeyFile, signingKeyFromSeed, type SigningKey } from '../common/minisign.ts';
import { downloadResuming } from '../agent/update/download.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { tempDir, writeReleaseDir } from './helpers/bundler-fixtures.ts';
import { waitFor } from './helpers/wait.ts';

const EXECUTABLE = `ct-ops-agent-linux-${process.arch === 'arm64' ? 'arm64' : 'x64'}`;

interface HostStatus {
  host_id: string;
  phase: string | null;
  error_code: string | null;
}

describe('agent self-update: offer, download, verify, stage', () => {
  const releaseKey = signingKeyFromSeed(randomBytes(32));
  const work = tempDir('ct-ops-self-update-');
  let appliance: TestAppliance;
  const agents: TestAgent[] = [];

  before(async () => {
    writeFileSync(join(work, 'release.pub'), publicKeyFile(releaseKey, 'CT-Ops test release key'));
    // 1 MiB/s: a 2 MiB executable takes two seconds, long enough to cut a download part-way.
    appliance = await TestAppliance.start({ args: ['--release-public-key-file', join(work, 'release.pub')], env: { CT_OPS_APPLIANCE_AGENT_DOWNLOAD_RATE_MIB: '1' } });
    const release = writeReleaseDir(mkdtempSync(join(work, 'media-')), releaseKey, { version: '9.1.0', bytes: 2 << 20 });
    const imported = await appliance.cli('releases', 'import', release);
    assert.equal(imported.code, 0, imported.stderr);
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  /** A started agent pinning `pinned`'s public key, with a helper spool of its own; resolves once it streams. */
  async function startAgent(pinned: SigningKey, tag: string): Promise<{ agent: TestAgent; spool: string; hostId: string }> {
    const { token } = await appliance.createToken('--auto-approve', '--tag', `ring:${tag}`);
    const pub = publicKeyFile(pinned, 'pinned').trimEnd();
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5, extraAgentToml: `\n[update]\nrelease_public_key = ${JSON.stringify(pub)}` });
    agents.push(agent);
    const spool = join(agent.root, 'spool');
    mkdirSync(spool, { mode: 0o700 });
    agent.start([], { CT_OPS_HELPER_REQUESTS_DIR: spool });
    await agent.process!.waitForLog('heartbeat stream opened');
    return { agent, spool, hostId: agent.state().agent_id };
  }

  async function phaseOf(hostId: string): Promise<HostStatus | undefined> {
    const status = await appliance.cliJson<{ hosts: HostStatus[] }>('releases', 'status');
    return status.hosts.find((host) => host.host_id === hostId);
  }

  it('downloads, verifies and stages the offered release for the root helper, reporting each phase', async () => {
    const { agent, spool, hostId } = await startAgent(releaseKey, 'good');
    const rollout = await appliance.cli('releases', 'rollout', '9.1.0', '--group', 'good=tag:ring=good');
    assert.equal(rollout.code, 0, rollout.stderr);
    await agent.process!.waitForLog('agent update verified and staged for the root helper', {}, 30_000);
    assert.equal(readFileSync(join(spool, 'request'), 'utf8'), `update ${EXECUTABLE}\n`);
    // The staged files are the release's own bytes: the helper verifies them again against its root-owned key.
    const release = await appliance.cliJson<{ files: Array<{ name: string; sha256: string; size: number }> }>('releases', 'show', '9.1.0');
    const staged = readFileSync(join(spool, EXECUTABLE));
    const listed = release.files.find((file) => file.name === EXECUTABLE)!;
    assert.equal(staged.length, listed.size);
    assert.equal(createHash('sha256').update(staged).digest('hex'), listed.sha256);
    const reported = await waitFor('the staged phase reported', async () => ((await phaseOf(hostId))?.phase === 'staged' ? true : undefined), 20_000);
    assert.ok(reported);
    assert.deepEqual(JSON.parse(readFileSync(join(agent.dataDir, 'update', 'state.json'), 'utf8')).phase, 'staged');
  });

  it('refuses a release signed by another key than the one pinned, once, reports it and keeps heartbeating', async () => {
    const { agent, spool, hostId } = await startAgent(signingKeyFromSeed(randomBytes(32)), 'other');
    const rollout = await appliance.cli('releases', 'rollout', '9.1.0', '--group', 'other=tag:ring=other');
    assert.equal(rollout.code, 0, rollout.stderr);
    const refused = await agent.process!.waitForLog('agent update refused or failed; this version is not tried again', {}, 30_000);
    assert.equal(refused.error_code, 'ERR_UPDATE_SIGNATURE_INVALID');
    await waitFor('the failure reported', async () => ((await phaseOf(hostId))?.error_code === 'ERR_UPDATE_SIGNATURE_INVALID' ? true : undefined), 20_000);
    // Three more heartbeats (5 s apart): streaming on, no second attempt, nothing staged.
    const acked = agent.process!.events.filter((event) => event.msg === 'heartbeat acknowledged').length;
    await waitFor('three more acks', () => agent.process!.events.filter((event) => event.msg === 'heartbeat acknowledged').length >= acked + 3 || undefined, 30_000);
    assert.equal(agent.process!.events.filter((event) => event.msg === 'agent update offered: downloading').length, 1, 'tried once');
    assert.throws(() => readFileSync(join(spool, 'request')), /ENOENT/);
  });

  it('a download cut part-way resumes where it stopped (Range) and completes', async () => {
    const jwt = agents[0]!.state().jwt;
    const release = await appliance.cliJson<{ files: Array<{ name: string; sha256: string; size: number }> }>('releases', 'show', '9.1.0');
    const listed = release.files.find((file) => file.name === EXECUTABLE)!;
    const source = { host: '127.0.0.1', port: appliance.httpPort, path: `/agent/v1/releases/9.1.0/${EXECUTABLE}`, jwt, caPem: appliance.caCert };
    const destination = join(work, 'partial-download');
    const cut = new AbortController();
    const watch = setInterval(() => {
      if ((statSync(destination, { throwIfNoEntry: false })?.size ?? 0) >= 512 * 1024) cut.abort();
    }, 20);
    await assert.rejects(downloadResuming(source, destination, listed.size, cut.signal), (error: Error & { code?: string }) => error.code === 'ERR_UPDATE_DOWNLOAD_FAILED');
    clearInterval(watch);
    const kept = statSync(destination).size;
    assert.ok(kept >= 512 * 1024 && kept < listed.size, `the cut left ${kept} of ${listed.size} bytes`);
    // Mark the part already fetched: a resumed download keeps it, one started over would not.
    const marked = readFileSync(destination);
    marked[100] = marked[100]! ^ 0xff;
    writeFileSync(destination, marked);
    await downloadResuming(source, destination, listed.size, new AbortController().signal);
    const whole = readFileSync(destination);
    assert.equal(whole.length, listed.size);
    assert.equal(whole[100], marked[100], 'the bytes before the cut were kept: the download resumed with Range');
    whole[100] = whole[100]! ^ 0xff;
    assert.equal(createHash('sha256').update(whole).digest('hex'), listed.sha256, 'the rest is the release');
  });

  it('one host may hold two download places at once, not more: a third is turned away with a Retry-After', async () => {
    const jwt = agents[0]!.state().jwt;
    const path = `/agent/v1/releases/9.1.0/${EXECUTABLE}`;
    // At 1 MiB/s a 2 MiB executable takes two seconds: the first two are still being served when the third asks.
    const held = [0, 1].map(() => httpsGet(appliance.httpPort, path, appliance.caCert, { authorization: `Bearer ${jwt}` }));
    await waitFor('two downloads under way', () => held.every((answer) => answer.started) || undefined);
    const third = await httpsGet(appliance.httpPort, path, appliance.caCert, { authorization: `Bearer ${jwt}` }).done;
    assert.equal(third.status, 503);
    assert.match(third.body.toString(), /ERR_DOWNLOAD_BUSY/);
    assert.ok(Number(third.headers['retry-after']) >= 5, `Retry-After ${String(third.headers['retry-after'])}`);
    const other = await httpsGet(appliance.httpPort, '/agent/v1/releases/9.1.0/SHA256SUMS', appliance.caCert, { authorization: `Bearer ${agents[1]!.state().jwt}` }).done;
    assert.equal(other.status, 200, 'another host is served meanwhile');
    const finished = await Promise.all(held.map((answer) => answer.done));
    assert.deepEqual(finished.map((answer) => answer.status), [200, 200]);
  });
});

/** An HTTPS GET trusting `caPem`: `started` turns true at the response's headers, `done` resolves at its end. */
function httpsGet(port: number, path: string, caPem: string, headers: Record<string, string>): { started: boolean; done: Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> } {
  const answer = { started: false } as { started: boolean; done: Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> };
  answer.done = new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', ca: caPem, servername: 'localhost', headers }, (res) => {
      answer.started = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
  return answer;
}
