/**
 * Issue 12's staged rollout with real agents: six agent processes against a real appliance, in two
 * groups of three by tag (ring:canary, ring:site-a). The second group is offered nothing — the
 * appliance records no offer for it and its agents take none over heartbeats acknowledged meanwhile —
 * until every canary runs the new version and reported healthy (the default threshold, 95 %); then
 * it updates and the rollout completes. A rollout of the next version where one canary rolls back
 * halts: the second group is not offered it although the other canaries are updated and healthy
 * (their group is met over the hosts it counts); resumed by an admin, the rollout goes on past the
 * host that rolled back, which keeps its version and never takes that one again.
 *
 * The agents are real on both sides of every swap: each host starts on this checkout's
 * dist/ct-ops-agent.cjs (its installed "binary" is a one-line script running it) and is updated to
 * single executables built from this checkout for the run (build-agents --release-version), so the
 * restarted agent really reports the new version and runs the updater's half after the swap
 * (installed, streaming, healthy), and the agent restored by a rollback reads the helper's answer.
 *
 * Played by the test: the root helper (installers/ct-ops-agent-helper.sh) and the service manager
 * it drives, over each host's own spool (CT_OPS_HELPER_REQUESTS_DIR), installed binary and previous
 * binary, following the helper's protocol step by step: when the agent's request line `update
 * <file>` appears, it takes the request and the three staged files out of the spool, checks
 * SHA256SUMS.minisig against the release key, the signed version newer than the installed one and
 * the file's SHA-256 listed in SHA256SUMS, keeps the installed binary as the previous one, swaps the
 * staged one in, restarts the host's agent from it, waits for the new agent to write its version
 * into `<spool>/streaming` after its first acknowledged heartbeat, checks that the same process is
 * still up after a settle (seconds here; 300 s by default), and answers `update ok <version>` in
 * `<spool>/result` (written aside, then renamed in). That is the whole contract the agent and the
 * appliance see, so what this file proves about the rollout does not depend on who plays the
 * helper. One failure is injected: on one canary the new binary "does not start" (the played
 * service manager does not start it), so the helper puts the previous binary back, restarts it and
 * answers `update rolled-back new-binary-did-not-start`. Unlike the unit (Restart=on-failure), the
 * played service manager never starts an agent again by itself: an agent that exits at start is
 * seen exiting, and fails the test. The real helper, its own verification and binaries that really
 * fail under a booted systemd are test/agent-update-nspawn.test.ts; its refusals of hostile spools,
 * test/installers-helper-trust.test.ts; the offers in the heartbeat acks themselves, message by
 * message, test/appliance-rollouts.test.ts.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { signedRelease } from '../agent/update/verify.ts';
import { sha256File } from '../bundler/lib/sha256sums.ts';
import { parsePublicKeyFile, type PublicKey } from '../common/minisign.ts';
import { compareVersions, RELEASE_SIGNATURE_FILE, RELEASE_SUMS_FILE } from '../common/release-version.ts';
import { ExecutableAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { tempDir } from './helpers/bundler-fixtures.ts';
import { AGENT_BIN, REPO_ROOT, run, type LogEvent, type LoggedProcess } from './helpers/processes.ts';
import type { HostStatus } from './helpers/rollout-status.ts';
import { StopWaiting, waitFor } from './helpers/wait.ts';

const RELEASE_FILE = 'ct-ops-agent-linux-x64';
/** What dist/ct-ops-agent.cjs reports: every host starts on it. */
const V0 = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const V1 = '0.1.1';
const V2 = '0.1.2';
/** The shortest interval agent.toml accepts. */
const HEARTBEAT_SECS = 5;
/**
 * How long the played helper watches a new agent keep its process before it counts (the real
 * helper's CT_OPS_UPDATE_SETTLE_SECS, 300 s by default). The canaries of the first rollout settle
 * for two heartbeat intervals, so the second group is seen heartbeating, offered nothing, over a
 * real interval while the first is not yet healthy.
 */
const SETTLE_MS = 1_000;
const CANARY_SETTLE_MS = 2 * HEARTBEAT_SECS * 1_000;
/** How long a new agent has to stream as its version (the real helper's CT_OPS_UPDATE_STREAM_WITHIN_SECS). */
const STREAM_WITHIN_MS = 30_000;
const GROUPS = ['--group', 'canary=tag:ring=canary', '--group', 'site-a=tag:ring=site-a'];

interface GroupStatus {
  name: string;
  started_at: string | null;
  hosts: number;
  eligible: number;
  healthy: number;
  rolled_back: number;
  met: boolean;
}

interface RolloutStatus {
  rollout: { state: string; halted_reason: string | null };
  groups: GroupStatus[];
  hosts: HostStatus[];
}

/**
 * A signed linux-x64 release of `version` built from this checkout into `outDir`: the agent bundled
 * again reporting `version`, signed with the development release key an appliance from this clone
 * trusts. Built for each run into the test's own folder rather than dist/test-releases
 * (linuxX64ReleaseOf): agent-update-nspawn, in the other lane, may be building the same version
 * there at the same time.
 */
async function buildRelease(version: string, outDir: string): Promise<string> {
  const built = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/build-agents.mjs'), '--target', 'linux-x64', '--no-bundle', '--release-version', version, '--out-dir', outDir, '--quiet'], {}, 300_000);
  assert.equal(built.code, 0, `build-agents --release-version ${version}: ${built.stderr.slice(-2_000)}`);
  return join(outDir, version);
}

/**
 * One host: a real agent run from its installed binary, with the root helper's part played over its
 * spool as the file's comment says. Every process the agent ran as is kept, in order, with its logs.
 */
class FleetHost {
  readonly agent: ExecutableAgent;
  readonly group: string;
  readonly spool: string;
  /** The installed agent (/usr/local/bin/ct-ops-agent) and the one kept for a rollback (ct-ops-agent.previous). */
  readonly binary: string;
  readonly previous: string;
  /** The helper's own folder, out of the agent's reach (/var/lib/ct-ops/helper). */
  readonly #work: string;
  readonly #releaseKey: PublicKey;
  readonly processes: LoggedProcess[] = [];
  /** Every answer the helper wrote into <spool>/result, in order. */
  readonly answers: string[] = [];
  /** What went wrong that the test did not inject: a refusal, a new agent that failed, an error of the played helper. */
  readonly faults: string[] = [];
  installedVersion = V0;
  /** The SHA-256 of what the helper installed last. */
  installedSha256 = '';
  settleMs = SETTLE_MS;
  /** The injected failure: a version whose binary does not start on this host. */
  failingVersion: string | undefined;
  /**
   * Until this holds, the injected failure is not yet seen (the real helper may take its 2 minutes):
   * the halt then comes after the rest of the group took the offer. A rollback first would halt
   * their offers too, which is right, but not the case this file shows.
   */
  failureSeenWhen: () => boolean = () => true;
  hostId = '';
  #serving: Promise<void> | undefined;
  #stopped = false;

  constructor(root: string, group: string, setup: { address: string; caCertFile: string; orgToken: string; releasePub: string }, releaseKey: PublicKey) {
    this.group = group;
    this.spool = join(root, 'spool');
    this.binary = join(root, 'bin', 'ct-ops-agent');
    this.previous = join(root, 'libexec', 'ct-ops-agent.previous');
    this.#work = join(root, 'helper');
    this.#releaseKey = releaseKey;
    for (const dir of [this.spool, join(root, 'bin'), join(root, 'libexec'), this.#work]) mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(this.binary, `#!/bin/sh\nexec '${process.execPath}' '${AGENT_BIN}' "$@"\n`, { mode: 0o755 });
    this.agent = new ExecutableAgent(
      { address: setup.address, caCertFile: setup.caCertFile, orgToken: setup.orgToken, intervalSecs: HEARTBEAT_SECS, extraAgentToml: `\n[update]\nrelease_public_key = ${JSON.stringify(setup.releasePub)}` },
      [this.binary],
    );
  }

  /** Enrols and streams; from then on the helper answers this host's requests. */
  async start(): Promise<void> {
    this.#launch();
    await this.processes.at(-1)!.waitForLog('heartbeat stream opened');
    this.hostId = this.agent.state().agent_id;
    this.#serving = this.#serve();
  }

  /** Events with this msg (and fields) across every process the agent ran as. */
  logged(msg: string, fields: Record<string, unknown> = {}): LogEvent[] {
    return this.processes.flatMap((proc) => proc.logged(msg, fields));
  }

  /** Heartbeats the appliance acknowledged to this host from `from` (ms since the epoch, the logs' time) until `to`. */
  ackedBetween(from: number, to = Infinity): number {
    return this.logged('heartbeat acknowledged').filter((event) => (event.time as number) >= from && (event.time as number) <= to).length;
  }

  async dispose(): Promise<void> {
    this.#stopped = true;
    await this.#serving;
    await this.agent.dispose();
  }

  /** The path unit: the helper runs whenever a request appears in the spool. */
  async #serve(): Promise<void> {
    while (!this.#stopped) {
      if (existsSync(join(this.spool, 'request'))) {
        try {
          const answer = await this.#handleRequest();
          if (answer.startsWith('update refused')) this.faults.push(answer);
          this.#answer(answer);
        } catch (error) {
          this.faults.push(String(error));
        }
      }
      await sleep(100);
    }
  }

  #launch(): void {
    this.processes.push(this.agent.start([], { CT_OPS_HELPER_REQUESTS_DIR: this.spool }));
  }

  /** Moves a file the agent's account wrote out of the spool into the helper's folder; its new path. */
  #take(name: string): string {
    const taken = join(this.#work, name);
    renameSync(join(this.spool, name), taken);
    return taken;
  }

  /** Writes the answer aside, then renames it in: the agent never reads half of it. */
  #answer(text: string): void {
    const written = join(this.#work, 'result');
    writeFileSync(written, `${text}\n`, { mode: 0o644 });
    renameSync(written, join(this.spool, 'result'));
    this.answers.push(text);
  }

  async #handleRequest(): Promise<string> {
    const fileName = /^update (\S+)$/.exec(readFileSync(this.#take('request'), 'utf8').trim())?.[1];
    if (fileName !== RELEASE_FILE) return `update refused ${fileName === undefined ? 'unknown-request' : 'wrong-target'}`;
    const sums = readFileSync(this.#take(RELEASE_SUMS_FILE));
    const signature = readFileSync(this.#take(RELEASE_SIGNATURE_FILE));
    const candidate = this.#take(fileName);
    let signed: ReturnType<typeof signedRelease>;
    try {
      signed = signedRelease(sums, signature, this.#releaseKey);
    } catch {
      return 'update refused release-signature-invalid';
    }
    const { version } = signed;
    if (version === undefined) return 'update refused release-version-unreadable';
    if (compareVersions(version, this.installedVersion) <= 0) return `update refused not-newer-than-installed-${this.installedVersion}`;
    const listed = signed.digests.get(fileName);
    const sha256 = await sha256File(candidate);
    if (listed !== sha256) return `update refused ${listed === undefined ? 'not-in-release' : 'sha256-mismatch'}`;
    return this.#install(candidate, version, sha256);
  }

  /** Keeps the installed binary, swaps the verified one in, restarts, watches; rolls back when the new agent fails. */
  async #install(candidate: string, version: string, sha256: string): Promise<string> {
    renameSync(this.binary, this.previous);
    chmodSync(candidate, 0o755);
    renameSync(candidate, this.binary);
    // A marker left from before says nothing about this start.
    rmSync(join(this.spool, 'streaming'), { force: true });
    await this.agent.stop();
    const why = await this.#watchNewAgent(version);
    if (why === undefined) {
      this.installedVersion = version;
      this.installedSha256 = sha256;
      return `update ok ${version}`;
    }
    if (version !== this.failingVersion) this.faults.push(`the new agent ${version} failed: ${why}`);
    renameSync(this.previous, this.binary);
    await this.agent.stop();
    this.#launch();
    return `update rolled-back ${why}`;
  }

  /** Starts the swapped-in binary and watches it as the helper does; why it failed, or undefined. */
  async #watchNewAgent(version: string): Promise<string | undefined> {
    if (version === this.failingVersion) {
      await waitFor('the rest of the group to take the offer', () => this.failureSeenWhen() || undefined, STREAM_WITHIN_MS, 100);
      return 'new-binary-did-not-start';
    }
    this.#launch();
    const started = this.processes.at(-1)!;
    const deadline = Date.now() + STREAM_WITHIN_MS;
    let streams = false;
    // A process that exited never streams (nothing here starts it again, see the file's comment).
    while (!streams && started.running && Date.now() < deadline && !this.#stopped) {
      streams = existsSync(join(this.spool, 'streaming')) && readFileSync(this.#take('streaming'), 'utf8').split('\n')[0] === version;
      if (!streams) await sleep(100);
    }
    if (!streams) return 'new-agent-never-streamed';
    await sleep(this.settleMs);
    return started.running ? undefined : 'new-binary-did-not-stay-up';
  }
}

describe('a staged rollout across two groups of three real agents', { skip: process.platform === 'linux' && process.arch === 'x64' ? false : 'the releases built here are linux-x64' }, () => {
  const work = tempDir('ct-ops-staged-rollout-');
  let appliance: TestAppliance;
  const hosts: FleetHost[] = [];
  const inGroup = (group: string): FleetHost[] => hosts.filter((host) => host.group === group);
  let v1Sha256: string;

  before(async () => {
    const releasesDir = join(work, 'releases');
    const [v1Dir, v2Dir] = await Promise.all([buildRelease(V1, releasesDir), buildRelease(V2, releasesDir)]);
    const releasePub = readFileSync(join(v1Dir, 'release.pub'), 'utf8');
    const releaseKey = parsePublicKeyFile(releasePub);
    // Downloads at loopback speed: the byte rate is not what is tested here.
    appliance = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_AGENT_DOWNLOAD_RATE_MIB: '4096' } });
    for (const dir of [v1Dir, v2Dir]) {
      const imported = await appliance.cli('releases', 'import', dir);
      assert.equal(imported.code, 0, imported.stderr);
    }
    v1Sha256 = (await appliance.cliJson<{ files: Array<{ name: string; sha256: string }> }>('releases', 'show', V1)).files.find((file) => file.name === RELEASE_FILE)!.sha256;
    for (const group of ['canary', 'site-a']) {
      const { token } = await appliance.createToken('--auto-approve', '--max-uses', '3', '--tag', `ring:${group}`);
      for (let index = 0; index < 3; index += 1) {
        const root = join(work, `${group}-${index}`);
        hosts.push(new FleetHost(root, group, { address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, releasePub: releasePub.trimEnd() }, releaseKey));
      }
    }
    await Promise.all(hosts.map((host) => host.start()));
  });
  after(async () => {
    await Promise.all(hosts.map((host) => host.dispose()));
    await appliance?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  /** `releases status`; stops the wait at once when something the test did not inject went wrong on a host. */
  async function rolloutStatus(): Promise<RolloutStatus> {
    const broken = hosts.find((host) => host.faults.length > 0);
    if (broken) throw new StopWaiting(`${broken.group} host ${broken.hostId}: ${broken.faults.join('; ')}`);
    return appliance.cliJson<RolloutStatus>('releases', 'status');
  }
  /** The wait's result; when it fails, its error says where each host stands (its helper's answers, its agent's last events). */
  async function withFleetReport<T>(wait: Promise<T>): Promise<T> {
    try {
      return await wait;
    } catch (error) {
      const report = hosts.map((host) => {
        const processes = host.processes.map((proc, index) => {
          const recent = proc.events.filter((event) => event.msg !== 'heartbeat acknowledged').slice(-6).map((event) => `${String(event.msg)}${event.error_code ? ` (${String(event.error_code)})` : ''}`);
          const state = proc.running ? 'running' : `exited ${proc.child.exitCode ?? proc.child.signalCode}, stderr ${JSON.stringify(proc.stderr.slice(-500))}`;
          return `  process ${index + 1}: ${state}, last events ${JSON.stringify(recent)}`;
        });
        return [`${host.group} ${host.hostId}: answers ${JSON.stringify(host.answers)}, faults ${JSON.stringify(host.faults)}`, ...processes].join('\n');
      });
      const status = await appliance.cli('releases', 'status');
      throw new Error(`${(error as Error).message}\n${status.stdout}${report.join('\n')}`, { cause: error });
    }
  }
  const hostIn = (status: RolloutStatus, host: FleetHost): HostStatus => status.hosts.find((entry) => entry.host_id === host.hostId)!;
  const groupIn = (status: RolloutStatus, name: string): GroupStatus => status.groups.find((entry) => entry.name === name)!;
  const updatedTo = (status: RolloutStatus, host: FleetHost, version: string): boolean => {
    const entry = hostIn(status, host);
    return entry.agent_version === version && entry.update_version === version && entry.phase === 'healthy';
  };
  /** The time (ms since the epoch) of the appliance's first log event `msg` with these fields. */
  const loggedAt = (msg: string, fields: Record<string, unknown>): number => {
    const event = appliance.process.logged(msg, fields)[0];
    assert.ok(event, `the appliance logged "${msg}" ${JSON.stringify(fields)}`);
    return event.time as number;
  };

  it('offers the second group nothing until every canary runs the new version healthy, then updates it; the rollout completes', { timeout: 180_000 }, async () => {
    for (const canary of inGroup('canary')) canary.settleMs = CANARY_SETTLE_MS;
    const started = await appliance.cliJson<{ state: string; groups: Array<{ name: string; started_at: string | null }> }>('releases', 'rollout', V1, ...GROUPS);
    const rolloutStartedAt = Date.now();
    assert.equal(started.state, 'running');
    assert.deepEqual(started.groups.map((group) => [group.name, group.started_at !== null]), [['canary', true], ['site-a', false]]);

    // A status read's host phases are of a moment before its groups were read: a read followed by
    // one where site-a has still not started was certainly taken before site-a started.
    let previous: RolloutStatus | undefined;
    let readsBeforeSiteA = 0;
    const offeredEarly = new Set<string>();
    const completed = await withFleetReport(waitFor('the rollout of 0.1.1 completed', async () => {
      const status = await rolloutStatus();
      if (previous !== undefined && groupIn(status, 'site-a').started_at === null) {
        readsBeforeSiteA += 1;
        for (const host of inGroup('site-a')) if (hostIn(previous, host).phase !== null) offeredEarly.add(host.hostId);
      }
      previous = status;
      return status.rollout.state === 'completed' ? status : undefined;
    }, 150_000, 500));

    assert.ok(readsBeforeSiteA >= 5, `the status was read ${readsBeforeSiteA} times before site-a started`);
    assert.deepEqual([...offeredEarly], [], 'no site-a host was offered the version while the canaries updated');
    const siteAStartedAt = loggedAt('rollout group started', { version: V1, group: 'site-a' });
    const canariesHealthyAt = Math.max(...inGroup('canary').map((host) => loggedAt('agent update reported', { host_id: host.hostId, version: V1, phase: 'healthy' })));
    assert.ok(canariesHealthyAt <= siteAStartedAt, 'site-a started only once the last canary reported healthy');
    for (const host of inGroup('site-a')) {
      const acked = host.ackedBetween(rolloutStartedAt, siteAStartedAt);
      assert.ok(acked >= 2, `a site-a host had ${acked} heartbeats acknowledged, offered nothing, while the canaries updated`);
      const taken = host.logged('agent update offered: downloading', { version: V1 });
      assert.equal(taken.length, 1);
      assert.ok((taken[0]!.time as number) >= siteAStartedAt, 'taken once its group started');
    }

    for (const host of hosts) {
      assert.ok(updatedTo(completed, host, V1), `${host.group} host ${JSON.stringify(hostIn(completed, host))}`);
      assert.deepEqual(host.answers, [`update ok ${V1}`]);
      assert.equal(host.installedSha256, v1Sha256, 'the release the appliance lists is what was installed');
      assert.equal(host.processes.length, 2, 'the agent was restarted once, from the new binary');
    }
    assert.deepEqual(completed.groups.map((group) => [group.name, group.hosts, group.eligible, group.healthy, group.met]), [['canary', 3, 3, 3, true], ['site-a', 3, 3, 3, true]]);
  });

  it('halts when a canary rolls back: the second group is not offered the version although the other canaries are updated and healthy', { timeout: 120_000 }, async () => {
    const [failing, ...healthyCanaries] = inGroup('canary') as [FleetHost, ...FleetHost[]];
    for (const canary of inGroup('canary')) canary.settleMs = SETTLE_MS;
    failing.failingVersion = V2;
    failing.failureSeenWhen = () => healthyCanaries.every((host) => host.logged('agent update offered: downloading', { version: V2 }).length > 0);
    const started = await appliance.cliJson<{ state: string }>('releases', 'rollout', V2, ...GROUPS);
    assert.equal(started.state, 'running');

    const halted = await withFleetReport(waitFor('the rollout of 0.1.2 halted with the other canaries healthy on it', async () => {
      const status = await rolloutStatus();
      const settled = status.rollout.state === 'halted' && hostIn(status, failing).phase === 'rolled_back' && healthyCanaries.every((host) => updatedTo(status, host, V2));
      return settled ? status : undefined;
    }, 90_000, 500));
    assert.equal(halted.rollout.halted_reason, `host ${failing.hostId} rolled back ${V2} (ERR_UPDATE_ROLLED_BACK)`);
    const reported = hostIn(halted, failing);
    assert.deepEqual([reported.agent_version, reported.update_version, reported.error_code, reported.detail], [V1, V2, 'ERR_UPDATE_ROLLED_BACK', 'new-binary-did-not-start']);
    assert.deepEqual(failing.answers, [`update ok ${V1}`, 'update rolled-back new-binary-did-not-start']);
    assert.equal(await sha256File(failing.binary), v1Sha256, 'the previous binary is back in place');
    // The canaries it counts are all updated: only the halt holds the second group back.
    const canaries = groupIn(halted, 'canary');
    assert.deepEqual([canaries.hosts, canaries.eligible, canaries.healthy, canaries.rolled_back, canaries.met], [3, 2, 2, 1, true]);
    assert.equal(groupIn(halted, 'site-a').started_at, null);

    // Two more heartbeats of every host: still halted, nothing offered to site-a, nothing retried.
    const haltSeenAt = Date.now();
    await waitFor('two more acknowledged heartbeats of every host', () => hosts.every((host) => host.ackedBetween(haltSeenAt) >= 2) || undefined, 4 * HEARTBEAT_SECS * 1_000, 250);
    const later = await rolloutStatus();
    assert.equal(later.rollout.state, 'halted');
    assert.equal(groupIn(later, 'site-a').started_at, null);
    assert.equal(appliance.process.logged('rollout group started', { version: V2 }).length, 0);
    for (const host of inGroup('site-a')) {
      assert.ok(updatedTo(later, host, V1), `site-a host ${JSON.stringify(hostIn(later, host))}`);
      assert.equal(host.logged('agent update offered: downloading', { version: V2 }).length, 0);
      assert.deepEqual(host.answers, [`update ok ${V1}`]);
    }
    assert.equal(failing.logged('agent update offered: downloading', { version: V2 }).length, 1);
    assert.equal(hostIn(later, failing).agent_version, V1);
  });

  it('resumed by an admin, goes on past the host that rolled back: the second group updates, the rollout completes, that host keeps its version', { timeout: 120_000 }, async () => {
    const failing = inGroup('canary')[0]!;
    const resumed = await appliance.cliJson<{ state: string }>('releases', 'resume');
    assert.equal(resumed.state, 'running');
    const resumedAt = Date.now();

    const completed = await withFleetReport(waitFor('the rollout of 0.1.2 completed', async () => {
      const status = await rolloutStatus();
      return status.rollout.state === 'completed' ? status : undefined;
    }, 90_000, 500));
    for (const host of hosts.filter((entry) => entry !== failing)) assert.ok(updatedTo(completed, host, V2), `${host.group} host ${JSON.stringify(hostIn(completed, host))}`);
    // Blocked where it rolled back: out of the threshold, heartbeating on its version, never taking it again.
    assert.deepEqual(completed.groups.map((group) => [group.name, group.eligible, group.healthy, group.met]), [['canary', 2, 2, true], ['site-a', 3, 3, true]]);
    const reported = hostIn(completed, failing);
    assert.deepEqual([reported.agent_version, reported.update_version, reported.phase], [V1, V2, 'rolled_back']);
    await waitFor('two acknowledged heartbeats of the host that rolled back since the resume', () => failing.ackedBetween(resumedAt) >= 2 || undefined, 4 * HEARTBEAT_SECS * 1_000, 250);
    assert.equal(failing.logged('agent update offered: downloading', { version: V2 }).length, 1);
    assert.equal(failing.answers.length, 2, 'no second request reached its helper');
  });
});
