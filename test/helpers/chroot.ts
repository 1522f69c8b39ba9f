import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { LoggedProcess, REPO_ROOT } from './processes.ts';

/*
 * Isolated Debian root file systems for the install-script tests.
 *
 * A minimal bookworm (debootstrap --variant=minbase, plus systemd for `systemctl enable` and
 * `systemd-analyze verify --root`) is built once into .cache/debootstrap/ and reused. Each test
 * gets its own writable view of it: an overlay mount (the cache is the read-only lower layer),
 * or a full copy where overlays are not available. Everything runs as root; the chroot shares
 * the host's network namespace, so an appliance on loopback outside is reachable inside.
 */

const SUITE = 'bookworm';
/** Beyond minbase (which already has coreutils, passwd, util-linux): systemctl, systemd-analyze's unit set. */
const INCLUDE = ['systemd'];
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';

/** Why the chroot tests cannot run here, or undefined when they can. Missing tools are errors, not skips. */
export function chrootUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (chroot, mount, chown)';
  return undefined;
}

/** The Debian mirror this machine's apt uses (so the test needs no other network access). */
export function aptMirror(): string {
  if (process.env.CT_OPS_DEBOOTSTRAP_MIRROR) return process.env.CT_OPS_DEBOOTSTRAP_MIRROR;
  const sources: string[] = [];
  for (const file of ['/etc/apt/sources.list', ...safeList('/etc/apt/sources.list.d').map((name) => join('/etc/apt/sources.list.d', name))]) {
    if (/\.(list|sources)$/.test(file) && existsSync(file)) sources.push(readFileSync(file, 'utf8'));
  }
  for (const text of sources) {
    // deb822: "URIs: http://…/debian" in a stanza whose Suites name a release (not -security).
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      if (uri && /^Types:.*\bdeb\b/m.test(stanza) && !/security/.test(uri)) return uri;
    }
    const line = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/m.exec(text);
    if (line && !/security/.test(line[1]!)) return line[1]!;
  }
  return DEFAULT_MIRROR;
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The cached base root: .cache/debootstrap/<suite>-minbase-<hash of the package list>. */
export function baseRootDir(): string {
  if (process.env.CT_OPS_DEBOOTSTRAP_CACHE) return process.env.CT_OPS_DEBOOTSTRAP_CACHE;
  const key = createHash('sha256').update(JSON.stringify({ SUITE, INCLUDE, arch: process.arch })).digest('hex').slice(0, 10);
  return join(REPO_ROOT, '.cache', 'debootstrap', `${SUITE}-minbase-${key}`);
}

/**
 * Returns the cached base root, building it first if missing (a few minutes, once). The folder
 * appears under its final name only when debootstrap finished, so a half-built one is never used.
 */
export function ensureBaseRoot(): string {
  const dir = baseRootDir();
  if (existsSync(join(dir, 'usr', 'bin', 'systemctl'))) return dir;
  const debootstrap = ['/usr/sbin/debootstrap', '/usr/bin/debootstrap'].find((path) => existsSync(path));
  if (!debootstrap) throw new Error('debootstrap is not installed (apt-get install -y debootstrap): the install-script tests need it to build their Debian root');
  const partial = `${dir}.partial-${process.pid}`;
  mkdirSync(join(dir, '..'), { recursive: true });
  rmSync(partial, { recursive: true, force: true });
  const result = spawnSync(debootstrap, ['--variant=minbase', `--include=${INCLUDE.join(',')}`, SUITE, partial, aptMirror()], { encoding: 'utf8', timeout: 20 * 60_000 });
  if (result.status !== 0) {
    rmSync(partial, { recursive: true, force: true });
    throw new Error(`debootstrap failed (${result.status ?? result.signal}): ${(result.stderr || result.stdout).slice(-3000)}`);
  }
  // Trim what no test reads; keeps per-test copies fast where overlays are unavailable.
  for (const sub of ['usr/share/doc', 'usr/share/man', 'usr/share/locale', 'var/cache/apt/archives']) {
    rmSync(join(partial, sub), { recursive: true, force: true });
  }
  mkdirSync(join(partial, 'var/cache/apt/archives/partial'), { recursive: true });
  try {
    renameSync(partial, dir);
  } catch (error) {
    // Another test process finished first: use its root.
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(dir)) throw error;
  }
  return dir;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** One entry of a file-system listing: enough to notice any change a script could make. */
export type Listing = Map<string, string>;

/** A disposable, writable Debian root for one test. */
export class TestRoot {
  readonly path: string;
  readonly #scratch: string;
  readonly #overlay: boolean;
  readonly #mounts: string[] = [];

  private constructor(scratch: string, path: string, overlay: boolean) {
    this.#scratch = scratch;
    this.path = path;
    this.#overlay = overlay;
  }

  static create(): TestRoot {
    const base = ensureBaseRoot();
    const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-chroot-'));
    const merged = join(scratch, 'root');
    for (const sub of ['upper', 'work', 'root']) mkdirSync(join(scratch, sub));
    const mounted = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${base},upperdir=${join(scratch, 'upper')},workdir=${join(scratch, 'work')}`, merged], { encoding: 'utf8' });
    if (mounted.status === 0) return new TestRoot(scratch, merged, true);
    execFileSync('cp', ['-a', `${base}/.`, merged]);
    return new TestRoot(scratch, merged, false);
  }

  /** The host path of a path inside the root. */
  at(inside: string): string {
    return join(this.path, inside);
  }

  /** Runs a command inside the root (chroot), with a clean environment. */
  run(command: readonly string[], options: { env?: Record<string, string>; userspec?: string; timeoutMs?: number } = {}): RunResult {
    const args = [...(options.userspec ? [`--userspec=${options.userspec}`] : []), this.path, ...command];
    const result = spawnSync('chroot', args, {
      encoding: 'utf8',
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...options.env },
      timeout: options.timeoutMs ?? 120_000,
    });
    return { code: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
  }

  /** Starts a long-running process inside the root; its stdout is parsed as JSON log lines. */
  spawn(command: readonly string[], options: { env?: Record<string, string>; userspec?: string } = {}): LoggedProcess {
    const args = [...(options.userspec ? [`--userspec=${options.userspec}`] : []), this.path, ...command];
    return new LoggedProcess('chroot', args, { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...options.env });
  }

  /** Mounts /proc inside the root (the agent reads vitals from it). Undone by dispose(). */
  mountProc(): void {
    const target = this.at('proc');
    execFileSync('mount', ['-t', 'proc', 'proc', target]);
    this.#mounts.push(target);
  }

  /**
   * Copies a host program and the shared libraries it needs (those the root lacks) into the
   * root: the Debian root has neither minisign nor openssl, and the scripts' paths with and
   * without them are both tested. Returns the path inside the root.
   */
  addHostTool(hostPath: string): string {
    const libraries = execFileSync('ldd', [hostPath], { encoding: 'utf8' }).split('\n').map((line) => /=>\s+(\/\S+)/.exec(line)?.[1]).filter((path): path is string => path !== undefined);
    for (const library of [hostPath, ...libraries]) {
      const inside = this.at(library);
      if (library !== hostPath && existsSync(inside)) continue;
      mkdirSync(join(inside, '..'), { recursive: true });
      copyFileSync(library, inside);
      chmodSync(inside, 0o755);
    }
    return hostPath;
  }

  /** uid and gid of a user in the root's own /etc/passwd, or undefined. */
  account(name: string): { uid: number; gid: number } | undefined {
    const line = readFileSync(this.at('etc/passwd'), 'utf8').split('\n').find((entry) => entry.split(':')[0] === name);
    if (!line) return undefined;
    const fields = line.split(':');
    return { uid: Number(fields[2]), gid: Number(fields[3]) };
  }

  groupId(name: string): number | undefined {
    const line = readFileSync(this.at('etc/group'), 'utf8').split('\n').find((entry) => entry.split(':')[0] === name);
    return line ? Number(line.split(':')[2]) : undefined;
  }

  /**
   * Every path under the root except the given top-level folders, with type, mode, owner, size,
   * modification time and (for links) target: comparing two listings shows any change.
   */
  listing(exclude: readonly string[] = ['proc', 'sys', 'dev', 'run', 'bundle']): Listing {
    const entries: Listing = new Map();
    const walk = (relative: string): void => {
      for (const name of readdirSync(join(this.path, relative))) {
        const child = relative ? `${relative}/${name}` : name;
        if (!relative && exclude.includes(name)) continue;
        const stat = lstatSync(join(this.path, child));
        const kind = stat.isSymbolicLink() ? `link->${readlinkSync(join(this.path, child))}` : stat.isDirectory() ? 'dir' : stat.isFile() ? 'file' : 'other';
        const content = stat.isFile() ? ` ${stat.size} ${stat.mtimeMs}` : '';
        entries.set(child, `${kind} ${(stat.mode & 0o7777).toString(8)} ${stat.uid}:${stat.gid}${content}`);
        if (stat.isDirectory()) walk(child);
      }
    };
    walk('');
    return entries;
  }

  dispose(): void {
    for (const mount of this.#mounts.reverse()) spawnSync('umount', ['-l', mount]);
    if (this.#overlay) spawnSync('umount', ['-l', this.path]);
    rmSync(this.#scratch, { recursive: true, force: true });
  }
}

/** A TestRoot factory for the calling suite (call it inside describe): every root it made is disposed after the suite. */
export function suiteRoots(): () => TestRoot {
  const roots: TestRoot[] = [];
  after(() => {
    for (const root of roots) root.dispose();
  });
  return () => {
    const root = TestRoot.create();
    roots.push(root);
    return root;
  };
}

/** Differences between two listings, as readable lines ("+ path", "- path", "~ path: a → b"). */
export function diffListings(before: Listing, after: Listing): string[] {
  const changes: string[] = [];
  for (const [path, entry] of after) {
    const old = before.get(path);
    if (old === undefined) changes.push(`+ ${path}`);
    else if (old !== entry) changes.push(`~ ${path}: ${old} → ${entry}`);
  }
  for (const path of before.keys()) if (!after.has(path)) changes.push(`- ${path}`);
  return changes.sort();
}

// --- bundle folders ----------------------------------------------------------------------------

export interface BundleFiles {
  /** The agent executable's bytes. */
  agent: Buffer | string;
  agentToml: string;
  caCert: string;
  target?: string;
}

/** Files of a linux bundle that come from this repository (installers/, systemd/). */
const LINUX_REPO_FILES: Record<string, string> = {
  'install.sh': 'installers/install.sh',
  'uninstall.sh': 'installers/uninstall.sh',
  'ct-ops-agent-helper.sh': 'installers/ct-ops-agent-helper.sh',
  'ct-ops-agent.service': 'systemd/ct-ops-agent.service',
  'ct-ops-agent-helper.path': 'systemd/ct-ops-agent-helper.path',
  'ct-ops-agent-helper.service': 'systemd/ct-ops-agent-helper.service',
};

/**
 * Lays out an extracted linux-x64 bundle folder in `parent`, exactly per docs/bundle-format.md
 * (the files, TARGET, SHA256SUMS by sha256sum sorted by name), and returns its path.
 * Stand-in for `ct-ops-bundle build` + unzip until the bundler exists: swap the body for that
 * and the tests stay the same.
 */
/** The agent.toml a bundle for these chroot tests carries: the appliance address and CA the bundle would name, `dataDir`, and the release key pinned (its minisign public key file). */
export function bundleAgentToml(dataDir: string, releasePublicKey: string): string {
  return [
    '[ingest]',
    'address = "127.0.0.1:9443"',
    'ca_cert_file = "/etc/ct-ops/ca.crt"',
    '',
    '[agent]',
    `data_dir = ${JSON.stringify(dataDir)}`,
    '',
    '[update]',
    `release_public_key = ${JSON.stringify(releasePublicKey.trimEnd())}`,
    '',
  ].join('\n');
}

export function assembleLinuxBundleFolder(parent: string, files: BundleFiles, version = '0.1.0'): string {
  const dir = join(parent, `ct-ops-agent-${version}-linux-x64`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ct-ops-agent'), files.agent);
  chmodSync(join(dir, 'ct-ops-agent'), 0o755);
  writeFileSync(join(dir, 'agent.toml'), files.agentToml);
  writeFileSync(join(dir, 'ca.crt'), files.caCert);
  writeFileSync(join(dir, 'TARGET'), `${files.target ?? 'linux-x64'}\n`);
  writeFileSync(join(dir, 'README.md'), '# CT-Ops agent bundle (test)\n');
  for (const [name, source] of Object.entries(LINUX_REPO_FILES)) {
    copyFileSync(join(REPO_ROOT, source), join(dir, name));
    chmodSync(join(dir, name), name.endsWith('.sh') ? 0o755 : 0o644);
  }
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify({ format: 1, os: 'linux', arch: 'x64', agent_version: version }, null, 2)}\n`);
  writeSha256Sums(dir);
  return dir;
}

/** (Re)writes SHA256SUMS for every file in the folder except itself and its signature. */
export function writeSha256Sums(dir: string): void {
  const names = readdirSync(dir).filter((name) => name !== 'SHA256SUMS' && name !== 'SHA256SUMS.minisig').sort();
  const output = execFileSync('sha256sum', ['--', ...names], { cwd: dir, encoding: 'utf8' });
  writeFileSync(join(dir, 'SHA256SUMS'), output);
}
