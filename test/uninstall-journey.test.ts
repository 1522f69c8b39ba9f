import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import nacl from 'tweetnacl';
import { seedFromPem } from '../common/ed25519-pem.ts';
import { GrpcCode } from '../common/errors.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { chrootUnavailable, TestRoot } from './helpers/chroot.ts';
import { httpsJson } from './helpers/https.ts';
import { callRegister, ingestClient, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { type LoggedProcess, REPO_ROOT, run } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * Remote uninstall with the real artefacts: the linux-x64 single executable built from this
 * checkout, a bundle from `ct-ops-bundle build`, install.sh in a throwaway Debian root, the agent
 * running as ct-ops, an admin deleting the host with uninstall, the real root helper (run by
 * the test in place of its systemd path unit: no systemd runs in a chroot, so the helper falls
 * back to setsid), and the real uninstall.sh stopping the agent, removing everything and
 * reporting with its private copy of the executable.
 */

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const BUNDLE_BIN = join(REPO_ROOT, 'dist/ct-ops-bundle.js');

describe('remote uninstall of an installed agent, from the admin API to a clean host', { skip: chrootUnavailable(), timeout: 15 * 60_000 }, () => {
  let appliance: TestAppliance;
  let admin: string;
  const roots: TestRoot[] = [];
  const agents: LoggedProcess[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-uninstall-journey-'));
  const agentsDir = join(scratch, 'agents');
  const api = (method: string, path: string) => httpsJson(appliance.httpPort, appliance.caCert, method, path, { bearer: admin });

  before(async () => {
    // Built from this checkout's dist/ct-ops-agent.cjs (npm run build), into a folder of this test:
    // dist/agents/ (all six targets, used by other tests) stays as it is.
    const built = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/build-agents.mjs'), '--target', 'linux-x64', '--no-bundle', '--out-dir', agentsDir], {}, 300_000);
    assert.equal(built.code, 0, built.stderr);
    // The running appliance builds bundles itself, from these freshly built agents.
    appliance = await TestAppliance.start({ env: { CT_OPS_BUNDLE_AGENTS_DIR: agentsDir } });
    admin = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.stop()));
    await appliance?.dispose();
    for (const root of roots) root.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** A fresh Debian root with the agent installed from a new bundle, running as ct-ops, approved and streaming. */
  async function installedAgent(name: string): Promise<{ root: TestRoot; agent: LoggedProcess; hostId: string; uid: number }> {
    const out = join(scratch, name);
    mkdirSync(out);
    const bundled = await run(process.execPath, [
      BUNDLE_BIN, 'build', '--data-dir', appliance.dataDir, '--os', 'linux', '--arch', 'x64',
      '--address', `127.0.0.1:${appliance.grpcPort}`, '--out', out, '--json',
    ], {}, 120_000);
    assert.equal(bundled.code, 0, bundled.stderr);
    const bundle = JSON.parse(bundled.stdout) as { path: string };
    const root = TestRoot.create();
    roots.push(root);
    mkdirSync(root.at('bundle'), { recursive: true });
    assert.equal((await run('unzip', ['-q', bundle.path, '-d', root.at('bundle')])).code, 0);
    const installed = root.run([`/bundle/ct-ops-agent-${VERSION}-linux-x64/install.sh`, '--no-start']);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr);
    root.mountProc();
    // The agent as its unit runs it: user ct-ops, installed config.
    const account = root.account('ct-ops')!;
    const agent = root.spawn(['/usr/local/bin/ct-ops-agent', '-config', '/etc/ct-ops/agent.toml'], { userspec: `${account.uid}:${account.gid}` });
    agents.push(agent);
    const response = await agent.waitForLog('registration response', {}, 60_000);
    const hostId = String(response.agent_id);
    assert.equal((await appliance.cli('hosts', 'approve', hostId)).code, 0);
    await agent.waitForLog('heartbeat stream opened', {}, 30_000);
    return { root, agent, hostId, uid: account.uid };
  }

  /**
   * The admin deletes the host with uninstall; the agent (not root) drops its request into the
   * spool, and the test plays ct-ops-agent-helper.path by running the real helper as root.
   */
  async function uninstallRemotely(root: TestRoot, agent: LoggedProcess, hostId: string, uid: number): Promise<{ taskId: string; log: string }> {
    const deleted = await api('DELETE', `/api/v1/hosts/${hostId}?uninstall=true`);
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    const taskId = String(deleted.body.uninstall.id);
    assert.equal((await api('GET', `/api/v1/hosts/${hostId}`)).body.pending_uninstall?.id, taskId);

    const requestFile = root.at('var/lib/ct-ops/requests/request');
    await waitFor('the agent\'s request in the spool', () => existsSync(requestFile), 20_000);
    assert.equal(statSync(requestFile).uid, uid, 'written by the agent\'s user');
    assert.equal(readFileSync(requestFile, 'utf8'), `uninstall ${taskId}\n`);
    const helper = root.run(['/usr/local/libexec/ct-ops/ct-ops-agent-helper.sh']);
    assert.equal(helper.code, 0, helper.stdout + helper.stderr);
    assert.match(helper.stdout, new RegExp(`starting /bin/sh /usr/local/libexec/ct-ops/uninstall\\.sh --report-task ${taskId} detached; log: /var/log/ct-ops-uninstall\\.log`));

    // The uninstaller stops the agent itself (no systemd here): TERM, so it exits cleanly.
    const exit = await waitFor('the agent to be stopped by the uninstaller', async () => (agent.running ? undefined : agent.exited), 60_000);
    assert.equal(exit.code, 0, agent.stderr);
    assert.equal(agent.logged('uninstall requested from the root helper', { task_id: taskId }).length, 1);
    // The helper answered "uninstall ok", and only once the uninstaller had started.
    const starting = helper.stdout.indexOf('starting /bin/sh');
    const answered = helper.stdout.indexOf('answered: uninstall ok');
    assert.ok(starting >= 0 && answered > starting, helper.stdout);
    // The uninstaller may stop the agent before its next look at the spool (every 250 ms): the
    // appliance already has the task running, and the uninstaller's report finishes it. If the
    // agent did read the answer, it read that one.
    const answers = agent.logged('root helper answered', { task_id: taskId }).map((line) => line.answer);
    assert.ok(answers.length <= 1 && answers.every((answer) => answer === 'uninstall ok'), JSON.stringify(answers));

    const logFile = root.at('var/log/ct-ops-uninstall.log');
    const log = await waitFor('the uninstaller to finish and report', () => {
      const text = readFileSync(logFile, 'utf8');
      // The uninstaller deletes its private copies right after it says how the report went.
      const kitsLeft = readdirSync(root.at('var/lib')).some((name) => name.startsWith('ct-ops-report'));
      return /^ct-ops uninstall: (reported task|error: reporting task .* failed)/m.test(text) && !kitsLeft && text;
    }, 120_000);
    const logStat = lstatSync(logFile);
    assert.ok(logStat.isFile() && (logStat.mode & 0o777) === 0o600 && logStat.uid === 0, 'a private, root-owned log in /var/log');
    assert.match(log, /stopping the running agent \(pid \d+(?: \d+)*\)/);
    // The copies for the report sat on the root file system (not /tmp, which may be noexec), and are gone.
    assert.match(log, /copied what the report needs to \/var\/lib\/ct-ops-report\.[A-Za-z0-9]{8}$/m);
    assert.deepEqual(readdirSync(root.at('var/lib')).filter((name) => name.startsWith('ct-ops-report')), [], 'the private copies are gone');
    assert.deepEqual(readdirSync(root.at('tmp')).filter((name) => name.startsWith('ct-ops')), [], 'nothing of a remote uninstall sits in /tmp');
    return { taskId, log };
  }

  test('the agent asks the root helper, the detached uninstaller removes everything and reports, the host is deleted and its key retired', { timeout: 300_000 }, async () => {
    const { root, agent, hostId, uid } = await installedAgent('success');
    const savedKey = readFileSync(root.at('var/lib/ct-ops/agent/agent_key.pem'), 'utf8');
    const { jwt } = JSON.parse(readFileSync(root.at('var/lib/ct-ops/agent/agent_state.json'), 'utf8')) as { jwt: string };
    const orgToken = /tok_[A-Za-z0-9_-]+/.exec(readFileSync(root.at('etc/ct-ops/agent.toml'), 'utf8'))![0];

    const { taskId, log } = await uninstallRemotely(root, agent, hostId, uid);
    assert.match(log, /CT-Ops agent removed/);
    assert.match(log, new RegExp(`ct-ops-agent: reported task ${taskId} succeeded to 127\\.0\\.0\\.1:${appliance.grpcPort}`), log);
    assert.match(log, new RegExp(`ct-ops uninstall: reported task ${taskId} to the appliance`));
    for (const secret of [jwt, orgToken]) assert.ok(!log.includes(secret), 'no JWT or enrolment token in the uninstall log');

    // Nothing of the agent is left in the root: files, units, account.
    for (const path of [
      'usr/local/bin/ct-ops-agent', 'etc/ct-ops', 'var/lib/ct-ops', 'usr/local/libexec/ct-ops',
      'etc/systemd/system/ct-ops-agent.service', 'etc/systemd/system/ct-ops-agent-helper.path', 'etc/systemd/system/ct-ops-agent-helper.service',
      'etc/systemd/system/multi-user.target.wants/ct-ops-agent.service', 'etc/systemd/system/paths.target.wants/ct-ops-agent-helper.path',
    ]) {
      assert.equal(lstatSync(root.at(path), { throwIfNoEntry: false }), undefined, `${path} removed`);
    }
    assert.equal(root.account('ct-ops'), undefined, 'user ct-ops removed');
    assert.equal(root.groupId('ct-ops'), undefined, 'group ct-ops removed');

    // The appliance: the task succeeded, the host is deleted, and its key is retired.
    const finished = await api('GET', `/api/v1/tasks/${taskId}`);
    assert.equal(finished.body.state, 'succeeded', JSON.stringify(finished.body));
    const host = await api('GET', `/api/v1/hosts/${hostId}`);
    assert.equal(host.body.status, 'deleted');
    assert.ok(!(await api('GET', '/api/v1/hosts')).body.some((listed: { id: string }) => listed.id === hostId), 'gone from the host list');

    const seed = seedFromPem(savedKey);
    assert.ok(seed, 'the saved agent_key.pem holds an Ed25519 seed');
    const client = ingestClient(appliance.address, appliance.caCert);
    try {
      const again = await callRegister(client, signedRegister({ ...newIdentity(), keyPair: nacl.sign.keyPair.fromSeed(seed) }, ''));
      assert.ok(!again.ok && again.code === GrpcCode.PERMISSION_DENIED, JSON.stringify(again));
      assert.match(again.details, /^ERR_AGENT_KEY_RETIRED: /);
    } finally {
      client.close();
    }
  });

  test('a removal step that fails is reported as ERR_UNINSTALL_FAILED naming the step, and the host is not deleted', { timeout: 300_000 }, async () => {
    const { root, agent, hostId, uid } = await installedAgent('failure');
    // A userdel that refuses: the uninstaller's last step fails.
    writeFileSync(root.at('usr/sbin/userdel'), '#!/bin/sh\necho "userdel: refused by the test" >&2\nexit 1\n');
    chmodSync(root.at('usr/sbin/userdel'), 0o755);
    // The appliance installed on the same host (image/install.sh's layout): none of it is the agent's to remove.
    const foreign = { 'etc/ct-ops/appliance.toml': 'data_dir = "/var/lib/ct-ops/appliance"\n', 'etc/ct-ops/appliance-release.pub': 'key\n', 'var/lib/ct-ops/appliance/appliance.db': 'db' };
    mkdirSync(root.at('var/lib/ct-ops/appliance'), { mode: 0o700 });
    for (const [path, content] of Object.entries(foreign)) writeFileSync(root.at(path), content);

    const { taskId, log } = await uninstallRemotely(root, agent, hostId, uid);
    for (const [path, content] of Object.entries(foreign)) assert.equal(readFileSync(root.at(path), 'utf8'), content, `${path} survives the agent's uninstall`);
    for (const path of ['etc/ct-ops/agent.toml', 'etc/ct-ops/ca.crt', 'etc/ct-ops/release.pub', 'var/lib/ct-ops/agent', 'var/lib/ct-ops/requests', 'var/lib/ct-ops/helper']) {
      assert.equal(lstatSync(root.at(path), { throwIfNoEntry: false }), undefined, `the agent's ${path} removed`);
    }
    assert.match(log, /kept \/etc\/ct-ops: it holds files that are not the agent's/);
    assert.match(log, /ct-ops uninstall: error: failed: userdel ct-ops/);
    assert.doesNotMatch(log, /CT-Ops agent removed/);
    assert.match(log, new RegExp(`ct-ops-agent: reported task ${taskId} failed`));
    const failed = (await api('GET', `/api/v1/tasks/${taskId}`)).body;
    assert.equal(failed.state, 'failed', JSON.stringify(failed));
    assert.equal(failed.error_code, 'ERR_UNINSTALL_FAILED');
    assert.match(failed.output, /^uninstall\.sh exited 6 on .+: failed: userdel ct-ops$/);
    const host = (await api('GET', `/api/v1/hosts/${hostId}`)).body;
    assert.equal(host.deleted_at, null, 'a failed uninstall deletes nothing on the appliance');
    assert.equal(host.pending_uninstall, null);
    assert.ok((await api('GET', '/api/v1/hosts')).body.some((listed: { id: string }) => listed.id === hostId));
  });
});
