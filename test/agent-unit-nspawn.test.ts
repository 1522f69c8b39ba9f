import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { TestAppliance } from './helpers/appliance.ts';
import type { TestRoot } from './helpers/chroot.ts';
import { httpsJson } from './helpers/https.ts';
import { BootedSystem, nspawnUnavailable, rootWithAgentBundle } from './helpers/nspawn.ts';
import { linuxX64Executable } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * systemd/ct-ops-agent.service under a real systemd (PID 1 of a systemd-nspawn container on a
 * Debian root): install.sh from a bundle built on the appliance installs and starts the
 * single-executable agent, and the agent does its whole job inside the unit's sandbox
 * (seccomp filter, user namespace, ProtectProc, no capabilities): it enrols, streams vitals,
 * runs dpkg-query for a scan, honours the install-time IP allow-list and hands a remote
 * uninstall to the root helper through the spool.
 */

const UNIT = 'ct-ops-agent.service';
const DROP_IN_DIR = `etc/systemd/system/${UNIT}.d`;
const FINAL_STATES = ['succeeded', 'failed', 'timed_out', 'cancelled'];
const IO_URING_CALLS = 'io_uring_setup io_uring_enter io_uring_register';

interface HostView {
  status: string;
  last_heartbeat_at: string | null;
  cpu_percent: number | null;
  memory_percent: number | null;
  disk_percent: number | null;
  uptime_seconds: number | null;
  recent_vitals: unknown[];
}

interface TaskView {
  id: string;
  state: string;
  result: { sources: string[]; packages: number } | null;
}

describe('the agent under its hardened unit in a booted systemd', { skip: nspawnUnavailable(), timeout: 10 * 60_000 }, () => {
  let appliance: TestAppliance;
  let root: TestRoot;
  let system: BootedSystem;
  let hostId: string;
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-unit-'));

  before(async () => {
    await linuxX64Executable();
    appliance = await TestAppliance.start();
    root = await rootWithAgentBundle(appliance.dataDir, appliance.grpcPort, scratch);
    system = await BootedSystem.boot(root);
  });
  after(async () => {
    await system?.dispose();
    await appliance?.dispose();
    root?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  const host = async (): Promise<HostView> => appliance.cliJson<HostView>('hosts', 'show', hostId);
  const agentUid = (): number => root.account('ct-ops')!.uid;
  const mainPid = async (): Promise<number> => Number((await system.show(UNIT, 'MainPID')).MainPID);
  /** A file of /proc/<agent pid>/ as the container's root sees it. */
  const agentProc = async (file: string): Promise<string> => (await system.exec(['cat', `/proc/${await mainPid()}/${file}`])).stdout;

  /**
   * Replaces the test's drop-in (or removes it when text is undefined) and restarts the agent.
   * Returns the time (ms) at which the old agent was gone and the new one running (Type=simple).
   */
  async function restartWith(dropIn: string, text: string | undefined): Promise<number> {
    mkdirSync(root.at(DROP_IN_DIR), { recursive: true });
    if (text === undefined) unlinkSync(root.at(`${DROP_IN_DIR}/${dropIn}`));
    else writeFileSync(root.at(`${DROP_IN_DIR}/${dropIn}`), text);
    await system.systemctl('daemon-reload');
    await system.systemctl('restart', UNIT);
    return Date.now();
  }

  async function heartbeatSince(since: number): Promise<HostView> {
    return withJournal(waitFor('a heartbeat from the restarted agent', async () => {
      const shown = await host();
      return shown.last_heartbeat_at !== null && Date.parse(shown.last_heartbeat_at) >= since && shown;
    }, 30_000, 250));
  }

  /** The wait's result; when it fails, its error carries the unit's journal (the agent logs there). */
  async function withJournal<T>(wait: Promise<T>): Promise<T> {
    try {
      return await wait;
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await system.journal(UNIT)}`, { cause: error });
    }
  }

  async function expectActiveWithoutRestarts(): Promise<void> {
    const state = await system.show(UNIT, 'ActiveState', 'NRestarts');
    assert.deepEqual(state, { ActiveState: 'active', NRestarts: '0' }, await system.journal(UNIT));
  }

  /** Runs an inventory scan (child processes, async file reads) and returns its finished, successful task. */
  async function scanned(): Promise<TaskView> {
    const queued = await appliance.cliJson<TaskView>('hosts', 'rescan', hostId);
    const scan = await withJournal(waitFor('the scan to finish', async () => {
      const task = await appliance.cliJson<TaskView>('tasks', 'show', queued.id);
      return FINAL_STATES.includes(task.state) && task;
    }, 120_000, 250));
    assert.equal(scan.state, 'succeeded', `${JSON.stringify(scan)}\n${await system.journal(UNIT)}`);
    return scan;
  }

  async function ioUringRings(): Promise<number> {
    const listing = await system.exec(['ls', '-l', `/proc/${await mainPid()}/fd`]);
    return listing.stdout.split('\n').filter((line) => line.includes('anon_inode:[io_uring]')).length;
  }

  test('installed by install.sh and started by systemd, the real agent enrols, streams nonzero vitals and scans dpkg inside its sandbox', { timeout: 240_000 }, async () => {
    const [top] = readdirSync(root.at('bundle'));
    const installed = await system.exec([`/bundle/${top}/install.sh`]);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr + await system.journal());

    const pending = await withJournal(waitFor('the agent to enrol', async () => (await appliance.hosts()).find((entry) => entry.status === 'pending'), 60_000, 250));
    hostId = pending.id;
    assert.equal((await appliance.cli('hosts', 'approve', hostId)).code, 0);
    const online = await withJournal(waitFor('the host online with vitals', async () => {
      const shown = await host();
      return shown.status === 'online' && shown.recent_vitals.length >= 1 && shown;
    }, 60_000, 250));
    // /proc/meminfo and statfs work in the sandbox: memory, disk and uptime are real figures.
    for (const field of ['memory_percent', 'disk_percent', 'uptime_seconds'] as const) {
      assert.ok((online[field] ?? 0) > 0, `${field} = ${online[field]}`);
    }

    // dpkg-query runs as a child of the agent under the same seccomp filter and namespaces.
    const scan = await scanned();
    assert.deepEqual(scan.result?.sources, ['dpkg']);
    const listed = await system.exec(['dpkg-query', '-W', '-f=${Package}\n']);
    assert.equal(scan.result?.packages, listed.stdout.trim().split('\n').length, 'every package of the root');
    await expectActiveWithoutRestarts();
  });

  test('systemd applies the sandbox: ct-ops without capabilities, NoNewPrivileges, seccomp, a user namespace of two ids, /proc of its own processes', async () => {
    const properties = await system.show(UNIT, 'User', 'NoNewPrivileges', 'PrivateUsers', 'ProtectProc', 'ProtectSystem', 'PrivateMounts', 'RemoveIPC',
      'SystemCallErrorNumber', 'MemoryDenyWriteExecute', 'CapabilityBoundingSet');
    assert.deepEqual(properties, {
      User: 'ct-ops', NoNewPrivileges: 'yes', PrivateUsers: 'yes', ProtectProc: 'invisible', ProtectSystem: 'strict', PrivateMounts: 'yes', RemoveIPC: 'yes',
      SystemCallErrorNumber: '1', MemoryDenyWriteExecute: 'no', CapabilityBoundingSet: '',
    });
    const allowed = new Set((await system.show(UNIT, 'SystemCallFilter')).SystemCallFilter!.split(' '));
    for (const call of ['execve', 'connect', 'socketpair', 'statfs', 'mprotect']) assert.ok(allowed.has(call), `${call} allowed`);
    for (const call of ['io_uring_setup', 'mount', 'reboot', 'setuid', 'chown', 'setpriority', 'init_module', 'ptrace']) assert.ok(!allowed.has(call), `${call} filtered`);

    // What the kernel holds for the running process.
    const status = await agentProc('status');
    const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)![1]!.trim();
    const uid = agentUid();
    assert.deepEqual(field('Uid').split(/\s+/).map(Number), [uid, uid, uid, uid]);
    assert.equal(field('NoNewPrivs'), '1');
    assert.equal(field('Seccomp'), '2', 'a seccomp filter is installed');
    assert.equal(field('CapEff'), '0000000000000000');
    assert.equal(field('CapBnd'), '0000000000000000');
    const uidMap = (await agentProc('uid_map')).trim().split('\n').map((line) => line.trim().split(/\s+/).map(Number));
    assert.deepEqual(uidMap, [[0, 0, 1], [uid, uid, 1]], 'PrivateUsers maps only root and ct-ops, each to itself');
    assert.match(await agentProc('mountinfo'), / \/proc .* proc proc rw,hidepid=invisible/);
    // With identity mappings the agent's files keep their real owner outside the namespace.
    assert.equal(statSync(root.at('var/lib/ct-ops/agent/agent_key.pem')).uid, uid);
  });

  test('io_uring is refused to the agent, which still runs when libuv asks for it (UV_USE_IO_URING=1)', { timeout: 180_000 }, async () => {
    const asked = '[Service]\nEnvironment=UV_USE_IO_URING=1\n';
    // libuv sets its rings up at the first asynchronous file operation: a scan makes some (stat, readFile).
    await heartbeatSince(await restartWith('io-uring.conf', asked));
    await scanned();
    assert.equal(await ioUringRings(), 0, 'no io_uring ring: io_uring_setup failed with EPERM and libuv fell back');
    await expectActiveWithoutRestarts();

    // Control: the same agent with the three calls allowed again opens rings, so the figure above means something.
    await heartbeatSince(await restartWith('io-uring.conf', `${asked}SystemCallFilter=${IO_URING_CALLS}\n`));
    await scanned();
    assert.ok(await ioUringRings() > 0, 'libuv uses io_uring when the filter allows it');

    await heartbeatSince(await restartWith('io-uring.conf', undefined));
  });

  test('the install-time IP allow-list lets the agent reach its appliance and nothing else', { timeout: 180_000 }, async () => {
    const allowList = (address: string): string => `[Service]\nIPAddressDeny=any\nIPAddressAllow=${address}\n`;
    // install.sh wrote it from agent.toml's IP address: the agent may reach its appliance only.
    assert.equal(readFileSync(root.at(`${DROP_IN_DIR}/appliance-address.conf`), 'utf8'), `# Written by install.sh from agent.toml: the agent talks to its appliance only.\n${allowList('127.0.0.1')}`);
    // Allowed only another loopback address: the SYN to the appliance never leaves the agent's cgroup.
    const blockedAt = await restartWith('appliance-address.conf', allowList('127.0.0.2'));
    const port = appliance.grpcPort.toString(16).toUpperCase().padStart(4, '0');
    await waitFor('the agent\'s connection to hang unanswered', () => readFileSync('/proc/net/tcp', 'utf8').split('\n').some((line) => {
      const [, , remote, state, , , , uid] = line.trim().split(/\s+/);
      return remote === `0100007F:${port}` && state === '02' && Number(uid) === agentUid();
    }), 20_000, 250);
    await sleep(8_000);
    const blocked = await host();
    assert.ok(blocked.last_heartbeat_at === null || Date.parse(blocked.last_heartbeat_at) < blockedAt, 'no heartbeat got through');

    await heartbeatSince(await restartWith('appliance-address.conf', allowList('127.0.0.1')));
    await expectActiveWithoutRestarts();
  });

  test('a remote uninstall still works from inside the sandbox: the agent asks the root helper through the spool and the host is cleaned', { timeout: 240_000 }, async () => {
    const admin = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
    const api = (method: string, path: string) => httpsJson(appliance.httpPort, appliance.caCert, method, path, { bearer: admin });
    const deleted = await api('DELETE', `/api/v1/hosts/${hostId}?uninstall=true`);
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    const taskId = String(deleted.body.uninstall.id);

    const finished = await waitFor('the uninstaller to report', async () => {
      const task = (await api('GET', `/api/v1/tasks/${taskId}`)).body as TaskView;
      return FINAL_STATES.includes(task.state) && task;
    }, 180_000, 500);
    assert.equal(finished.state, 'succeeded', `${JSON.stringify(finished)}\n${await system.journal()}`);
    for (const path of ['usr/local/bin/ct-ops-agent', 'etc/ct-ops', 'var/lib/ct-ops', `etc/systemd/system/${UNIT}`]) {
      assert.equal(lstatSync(root.at(path), { throwIfNoEntry: false }), undefined, `${path} removed`);
    }
    const state = await system.exec(['systemctl', 'is-active', UNIT]);
    assert.notEqual(state.stdout.trim(), 'active');
  });
});
