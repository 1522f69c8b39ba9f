import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chrootUnavailable, TestRoot, type RunResult } from './chroot.ts';
import { LoggedProcess, REPO_ROOT, run } from './processes.ts';
import { hasCommand } from './tools.ts';
import { StopWaiting, waitFor } from './wait.ts';

/*
 * A real systemd booted as PID 1 of a container (systemd-nspawn -b) on a TestRoot, so that units
 * run under the service manager they ship for: sandboxing, seccomp, user namespaces, BPF IP
 * filters and all.
 *
 * Made for machines without systemd as their own PID 1 and without D-Bus (CI sandboxes):
 * - --register=no --keep-unit: nspawn asks no machined or host systemd for anything;
 * - the container is reached with nsenter on its PID 1 (no machinectl, no systemd-run -M); systemctl
 *   inside talks to PID 1 over its private socket, which needs no bus;
 * - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 gives the container cgroup v2 even on a hybrid host, and
 *   nspawn runs in a cgroup of its own, so two containers never share a unit tree;
 * - --system-call-filter=bpf: nspawn's own seccomp filter refuses bpf(), and the container's
 *   systemd needs it for IPAddressAllow=/IPAddressDeny=.
 * The network namespace is the host's: an appliance on 127.0.0.1 outside is reachable inside.
 */

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const BOOT_TIMEOUT_MS = 90_000;
const POWEROFF_TIMEOUT_MS = 30_000;
const LEGACY_SYSTEMD_HIERARCHY = '/sys/fs/cgroup/systemd';
let machines = 0;

/** Why a container cannot be booted here, or undefined when it can. */
export function nspawnUnavailable(): string | undefined {
  const chroot = chrootUnavailable();
  if (chroot) return chroot;
  for (const tool of ['systemd-nspawn', 'nsenter']) {
    if (!hasCommand(tool)) return `${tool} is not installed (apt-get install -y systemd-container util-linux)`;
  }
  if (!cgroup2Mount()) return 'no cgroup v2 hierarchy is mounted (/sys/fs/cgroup or /sys/fs/cgroup/unified)';
  return undefined;
}

/** Where the host mounts cgroup v2: the whole tree (unified) or beside v1 controllers (hybrid). */
function cgroup2Mount(): string | undefined {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return '/sys/fs/cgroup';
  if (existsSync('/sys/fs/cgroup/unified/cgroup.procs')) return '/sys/fs/cgroup/unified';
  return undefined;
}

/** A booted container; dispose() powers it off. The TestRoot stays the caller's to dispose. */
export class BootedSystem {
  /** systemd-nspawn itself; its stdout is the container's console. */
  readonly nspawn: LoggedProcess;
  /** The container's PID 1 (systemd), as a host PID. */
  readonly leader: number;
  readonly #cgroup: string;

  private constructor(nspawn: LoggedProcess, leader: number, cgroup: string) {
    this.nspawn = nspawn;
    this.leader = leader;
    this.#cgroup = cgroup;
  }

  /** Boots systemd on the root and waits until it reports running (or degraded). */
  static async boot(root: TestRoot): Promise<BootedSystem> {
    const name = `ctops-${process.pid}-${++machines}`;
    const cgroup = join(cgroup2Mount()!, name);
    mkdirSync(cgroup);
    // The shell moves itself into the container's own cgroup, then becomes nspawn.
    const nspawn = new LoggedProcess('sh', [
      '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup,
      'systemd-nspawn', '--boot', `--directory=${root.path}`, `--machine=${name}`, '--register=no', '--keep-unit',
      '--console=pipe', '--system-call-filter=bpf',
    ], { SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' });
    let leader: number | undefined;
    try {
      leader = await waitFor('the container to start systemd', () => {
        if (!nspawn.running) throw new StopWaiting(`systemd-nspawn exited (${nspawn.child.exitCode}): ${nspawn.stdout.slice(-2000)} ${nspawn.stderr.slice(-2000)}`);
        return initOf(nspawn.child.pid!);
      }, BOOT_TIMEOUT_MS, 100);
      const system = new BootedSystem(nspawn, leader, cgroup);
      await waitFor('systemd to finish booting', async () => {
        const state = (await system.exec(['systemctl', 'is-system-running'])).stdout.trim();
        return (state === 'running' || state === 'degraded') && state;
      }, BOOT_TIMEOUT_MS, 250);
      return system;
    } catch (error) {
      await stopContainer(nspawn, leader, cgroup);
      throw error;
    }
  }

  /** Runs a command inside the container as root, with a clean environment. */
  async exec(command: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
    const env = Object.entries({ PATH, LANG: 'C.UTF-8', ...options.env }).map(([key, value]) => `${key}=${value}`);
    return run('nsenter', [`--target=${this.leader}`, '--all', 'env', '-i', ...env, ...command], {}, options.timeoutMs ?? 120_000);
  }

  /** systemctl inside the container; throws with its output when it fails. */
  async systemctl(...args: string[]): Promise<string> {
    const result = await this.exec(['systemctl', '--no-pager', ...args]);
    if (result.code !== 0) throw new Error(`systemctl ${args.join(' ')} exited ${result.code}: ${result.stdout}${result.stderr}\n${await this.journal()}`);
    return result.stdout;
  }

  /** Unit properties as systemd reports them (`systemctl show -p …`). */
  async show(unit: string, ...properties: string[]): Promise<Record<string, string>> {
    const text = await this.systemctl('show', unit, ...properties.map((property) => `--property=${property}`));
    return Object.fromEntries(text.split('\n').filter(Boolean).map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  }

  /** The container's journal (of one unit, when given), for failure messages. */
  async journal(unit?: string): Promise<string> {
    const result = await this.exec(['journalctl', '--boot', '--no-pager', '--output=short-monotonic', ...(unit ? [`--unit=${unit}`] : ['--lines=200'])]);
    return result.stdout + result.stderr;
  }

  /** Powers the container off (SIGKILL after POWEROFF_TIMEOUT_MS) and removes its cgroup. */
  async dispose(): Promise<void> {
    await stopContainer(this.nspawn, this.leader, this.#cgroup);
  }
}

/** The container's init: nspawn's child process running systemd. */
function initOf(nspawnPid: number): number | undefined {
  const children = readOrEmpty(`/proc/${nspawnPid}/task/${nspawnPid}/children`).split(' ').filter(Boolean).map(Number);
  return children.find((pid) => readOrEmpty(`/proc/${pid}/comm`).trim() === 'systemd');
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * For -b, nspawn turns SIGTERM into a clean poweroff of the container. If that hangs, killing
 * the container's PID 1 ends every process of its PID namespace, and nspawn with it.
 */
async function stopContainer(nspawn: LoggedProcess, leader: number | undefined, cgroup: string): Promise<void> {
  if (nspawn.running) {
    nspawn.child.kill('SIGTERM');
    const stopped = await Promise.race([nspawn.exited.then(() => true), sleep(POWEROFF_TIMEOUT_MS).then(() => false)]);
    if (!stopped) {
      if (leader !== undefined) killQuietly(leader);
      nspawn.child.kill('SIGKILL');
      await nspawn.exited;
    }
  }
  // Processes leave their cgroups a moment after they exit; then the trees can be removed. On a
  // hybrid host nspawn mirrors the container's tree into the name=systemd v1 hierarchy too.
  const trees = [cgroup, join(LEGACY_SYSTEMD_HIERARCHY, basename(cgroup))].filter((dir) => existsSync(dir));
  for (let attempt = 0; attempt < 50 && trees.some((dir) => existsSync(dir)); attempt++) {
    if (trees.every((dir) => !existsSync(dir) || removeCgroupTree(dir))) break;
    writeCgroupKill(cgroup);
    await sleep(100);
  }
}

/** Removes a cgroup and the ones systemd created under it, deepest first; false while any is busy. */
function removeCgroupTree(dir: string): boolean {
  try {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) removeCgroupTree(join(dir, entry.name));
    }
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** cgroup.kill (Linux 5.14+) ends whatever is left in the container's cgroup tree. */
function writeCgroupKill(cgroup: string): void {
  try {
    writeFileSync(join(cgroup, 'cgroup.kill'), '1');
  } catch {
    // Older kernel or already removed.
  }
}

/**
 * A fresh Debian root holding, in /bundle/, the linux-x64 install bundle `dataDir`'s appliance builds
 * for an agent reaching it at 127.0.0.1:`grpcPort` (built into `scratch` by the real ct-ops-bundle).
 * The caller boots it (BootedSystem.boot) once it has added what its test needs, and disposes it.
 */
export async function rootWithAgentBundle(dataDir: string, grpcPort: number, scratch: string): Promise<TestRoot> {
  const bundled = await run(process.execPath, [
    join(REPO_ROOT, 'dist/ct-ops-bundle.js'), 'build', '--data-dir', dataDir, '--os', 'linux', '--arch', 'x64',
    '--address', `127.0.0.1:${grpcPort}`, '--out', scratch, '--json',
  ], {}, 120_000);
  if (bundled.code !== 0) throw new Error(`ct-ops-bundle build failed (${bundled.code}): ${bundled.stderr}`);
  const root = TestRoot.create();
  mkdirSync(root.at('bundle'));
  const unzipped = await run('unzip', ['-q', (JSON.parse(bundled.stdout) as { path: string }).path, '-d', root.at('bundle')]);
  if (unzipped.code !== 0) throw new Error(`unzip failed: ${unzipped.stderr}`);
  return root;
}
