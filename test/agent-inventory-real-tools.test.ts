import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import type { CollectContext, InventoryCollector } from '../agent/inventory/collectors/collector.ts';
import { dpkgCollector, pacmanCollector, rpmCollector } from '../agent/inventory/collectors/linux.ts';
import { DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_TIMEOUT_MS } from '../agent/inventory/index.ts';
import type { SoftwarePackage } from '../agent/inventory/package.ts';
import { NOT_AVAILABLE, runCommand } from '../agent/inventory/run.ts';
import { hasCommand } from './helpers/tools.ts';

// The rpm and pacman parsers read what the real tools print about real packages: each test builds
// tiny packages with rpmbuild or makepkg, installs them into a private root and database, and runs
// the collector's own command line against that database.

const run = promisify(execFile);
const TOOL_OUTPUT_BYTES = 16 * 1024 * 1024;

function missingTools(tools: readonly string[], install: string): string | undefined {
  const missing = tools.filter((tool) => !hasCommand(tool));
  return missing.length > 0 ? `${missing.join(', ')} not installed (apt-get install ${install})` : undefined;
}

const dpkgUnavailable = missingTools(['dpkg', 'dpkg-deb', 'dpkg-query'], 'dpkg') ?? (process.getuid?.() === 0 ? undefined : 'dpkg --root installs packages only as root');
const rpmUnavailable = missingTools(['rpm', 'rpmbuild'], 'rpm');
const pacmanUnavailable =
  missingTools(['pacman', 'makepkg', 'fakeroot', 'bsdtar'], 'pacman-package-manager makepkg libarchive-tools') ??
  (process.getuid?.() === 0 ? undefined : 'pacman -U installs packages only as root');

async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const nowUnix = () => Math.floor(Date.now() / 1000);

/**
 * Runs a collector with extra arguments appended to its command (a private root and database),
 * and returns what it parsed; a parse failure is reported with the tool's verbatim output.
 */
async function collectFrom(collector: InventoryCollector, privateDatabase: readonly string[]): Promise<readonly SoftwarePackage[]> {
  let output = '';
  const context: CollectContext = {
    async run(spec) {
      const result = await runCommand({ ...spec, args: [...spec.args, ...privateDatabase] }, { timeoutMs: DEFAULT_TIMEOUT_MS, maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES });
      if (result !== NOT_AVAILABLE) output = result;
      return result;
    },
    readFile: async () => NOT_AVAILABLE,
  };
  try {
    const parsed = await collector.collect(context);
    if (parsed === NOT_AVAILABLE) throw new Error(`${collector.name} is not on PATH`);
    assert.deepEqual(parsed.skipped, [], 'every record of the real tool was read');
    return parsed.packages;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${collector.name} could not read its real output (${reason}):\n${output}`, { cause: error });
  }
}

/**
 * Installs packages, then collects from the private database: the packages in name order without
 * their install dates, each date checked to fall between the start of the install and the collection.
 */
async function installThenCollect(collector: InventoryCollector, privateDatabase: readonly string[], install: () => Promise<void>): Promise<Omit<SoftwarePackage, 'install_date_unix'>[]> {
  const from = nowUnix();
  await install();
  const packages = await collectFrom(collector, privateDatabase);
  const to = nowUnix();
  for (const entry of packages) assert.ok(entry.install_date_unix >= from && entry.install_date_unix <= to, `${entry.name} installed at ${entry.install_date_unix}, the install ran from ${from} to ${to}`);
  return packages.map(({ install_date_unix: _date, ...rest }) => rest).sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version) || a.architecture.localeCompare(b.architecture));
}

// ---- dpkg ----

interface DebSpec {
  readonly name: string;
  readonly version: string;
  readonly arch: string;
  readonly multiArchSame?: boolean;
}

/** Builds the packages with dpkg-deb and installs them with dpkg into a private root (its own dpkg database). */
async function installDebs(dir: string, specs: readonly DebSpec[]): Promise<void> {
  const root = join(dir, 'root');
  await mkdir(join(root, 'var/lib/dpkg/info'), { recursive: true });
  await mkdir(join(root, 'var/lib/dpkg/updates'), { recursive: true });
  await writeFile(join(root, 'var/lib/dpkg/status'), '');
  await writeFile(join(root, 'var/lib/dpkg/available'), '');
  const debs: string[] = [];
  for (const spec of specs) {
    const build = join(dir, 'build', `${spec.name}-${spec.arch}`);
    await mkdir(join(build, 'DEBIAN'), { recursive: true });
    await mkdir(join(build, 'usr/share/doc', `${spec.name}-${spec.arch}`), { recursive: true });
    await writeFile(join(build, 'usr/share/doc', `${spec.name}-${spec.arch}`, 'README'), `${spec.name}\n`);
    const control = [`Package: ${spec.name}`, `Version: ${spec.version}`, `Architecture: ${spec.arch}`, 'Maintainer: Jörg Müller <jorg@example.org>', ...(spec.multiArchSame ? ['Multi-Arch: same'] : []), 'Description: built by the CT-Ops inventory tests', ''];
    await writeFile(join(build, 'DEBIAN/control'), control.join('\n'));
    const deb = join(dir, `${spec.name}_${spec.arch}.deb`);
    await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-b', build, deb]);
    debs.push(deb);
  }
  await run('dpkg', [`--root=${root}`, '--add-architecture', 'i386']);
  await run('dpkg', [`--root=${root}`, '--force-script-chrootless', '-i', ...debs], { maxBuffer: TOOL_OUTPUT_BYTES });
}

test('dpkg: real dpkg-query output keeps multi-arch twins (libc6 amd64 and i386), held packages, epochs and odd legal names', { skip: dpkgUnavailable ?? false }, async (t) => {
  const dir = await tempDir(t, 'ct-ops-dpkg-');
  const root = ['--root', join(dir, 'root')];
  const installed = await installThenCollect(dpkgCollector, root, async () => {
    await installDebs(dir, [
      { name: 'libc6', version: '2.36-9+deb12u4', arch: 'amd64', multiArchSame: true },
      { name: 'libc6', version: '2.36-9+deb12u4', arch: 'i386', multiArchSame: true },
      { name: 'g++-12', version: '1:12.2.0~rc1+dfsg-14', arch: 'all' },
      { name: 'libstdc++6.0-compat', version: '0.9~git20240101.abc123-1+b2', arch: 'amd64' },
      { name: 'held-pkg', version: '1.0', arch: 'all' },
    ]);
    // `apt-mark hold` does this: the package stays installed, its status reads "hold ok installed".
    const hold = execFile('dpkg', [`--root=${join(dir, 'root')}`, '--set-selections']);
    hold.stdin!.end('held-pkg hold\n');
    await new Promise((resolve, reject) => hold.on('exit', (code) => (code === 0 ? resolve(code) : reject(new Error(`dpkg --set-selections exited ${code}`)))));
  });
  const publisher = 'Jörg Müller';
  assert.deepEqual(installed, [
    { name: 'g++-12', version: '1:12.2.0~rc1+dfsg-14', architecture: 'all', publisher, source: 'dpkg' },
    { name: 'held-pkg', version: '1.0', architecture: 'all', publisher, source: 'dpkg' },
    { name: 'libc6', version: '2.36-9+deb12u4', architecture: 'amd64', publisher, source: 'dpkg' },
    { name: 'libc6', version: '2.36-9+deb12u4', architecture: 'i386', publisher, source: 'dpkg' },
    { name: 'libstdc++6.0-compat', version: '0.9~git20240101.abc123-1+b2', architecture: 'amd64', publisher, source: 'dpkg' },
  ]);
});

// ---- rpm ----

interface RpmSpec {
  readonly name: string;
  readonly epoch?: string;
  readonly version: string;
  readonly release: string;
  /** Passed to rpmbuild --target. */
  readonly arch: string;
  readonly vendor?: string;
  /** A path the package installs a one-line file at. */
  readonly file?: string;
}

function specFile(spec: RpmSpec): string {
  return [
    `Name: ${spec.name}`,
    ...(spec.epoch === undefined ? [] : [`Epoch: ${spec.epoch}`]),
    `Version: ${spec.version}`,
    `Release: ${spec.release}`,
    ...(spec.vendor === undefined ? [] : [`Vendor: ${spec.vendor}`]),
    'Summary: A package built by the CT-Ops inventory tests',
    'License: MIT',
    '%description',
    'Built and installed into a private rpm database by test/agent-inventory-real-tools.test.ts.',
    '%install',
    ...(spec.file === undefined ? [] : [`mkdir -p "%{buildroot}$(dirname ${spec.file})"`, `echo ${spec.name} > "%{buildroot}${spec.file}"`]),
    '%files',
    ...(spec.file === undefined ? [] : [spec.file]),
    '',
  ].join('\n');
}

/** The rpm arguments that select the private root and database under dir. */
const rpmDatabase = (dir: string) => ['--root', join(dir, 'root'), '--dbpath', '/var/lib/rpm'];

/** Builds the packages with rpmbuild and installs them, in one transaction, into the private database. */
async function installRpms(dir: string, specs: readonly RpmSpec[]): Promise<void> {
  const topdir = join(dir, 'rpmbuild');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, LC_ALL: 'C.UTF-8' };
  const built: string[] = [];
  for (const spec of specs) {
    const specPath = join(dir, `${spec.name}-${spec.version}.spec`);
    await writeFile(specPath, specFile(spec));
    const defines = [`_topdir ${topdir}`, `_dbpath ${join(dir, 'build-db')}`, 'debug_package %{nil}'].flatMap((define) => ['--define', define]);
    await run('rpmbuild', ['-bb', '--quiet', '--target', spec.arch, ...defines, specPath], { env, maxBuffer: TOOL_OUTPUT_BYTES });
    built.push(join(topdir, 'RPMS', spec.arch, `${spec.name}-${spec.version}-${spec.release}.${spec.arch}.rpm`));
  }
  await run('rpm', ['--initdb', ...rpmDatabase(dir)], { env });
  await run('rpm', ['-i', ...rpmDatabase(dir), '--nodeps', '--ignoreos', '--ignorearch', ...built], { env, maxBuffer: TOOL_OUTPUT_BYTES });
}

test('rpm: real rpm -qa output of installed packages gives epoch:version-release, architecture, UTF-8 vendor and install time', { skip: rpmUnavailable ?? false }, async (t) => {
  const dir = await tempDir(t, 'ct-ops-rpm-');
  const installed = await installThenCollect(rpmCollector, rpmDatabase(dir), () =>
    installRpms(dir, [
      { name: 'lib3-foo-bar2', epoch: '2', version: '1.0~rc1', release: '3.el9', arch: 'noarch', vendor: 'Société Générale Ünïcode', file: '/opt/lib3-foo-bar2/README' },
      { name: 'zero-epoch', epoch: '0', version: '5.1.8', release: '9.el9', arch: 'x86_64' },
      { name: 'twice', version: '1.0', release: '1', arch: 'x86_64' },
      { name: 'twice', version: '2.0', release: '1', arch: 'x86_64' },
    ]),
  );
  assert.deepEqual(installed, [
    { name: 'lib3-foo-bar2', version: '2:1.0~rc1-3.el9', architecture: 'noarch', publisher: 'Société Générale Ünïcode', source: 'rpm' },
    { name: 'twice', version: '1.0-1', architecture: 'x86_64', publisher: '', source: 'rpm' },
    { name: 'twice', version: '2.0-1', architecture: 'x86_64', publisher: '', source: 'rpm' },
    { name: 'zero-epoch', version: '0:5.1.8-9.el9', architecture: 'x86_64', publisher: '', source: 'rpm' },
  ]);
  const { stdout: evr } = await run('rpm', ['-qa', '--queryformat', '%{NAME} %{EVR}\\n', ...rpmDatabase(dir)]);
  assert.deepEqual(
    installed.map((entry) => `${entry.name} ${entry.version}`).sort(),
    evr.trim().split('\n').sort(),
    'every version reads as rpm\'s own %{EVR} (an Epoch: 0 included)',
  );
});

test('rpm: a vendor containing a tab is kept whole (the tab sent as a space, which the appliance accepts) and does not fail the collection', { skip: rpmUnavailable ?? false }, async (t) => {
  const dir = await tempDir(t, 'ct-ops-rpm-tab-');
  await installRpms(dir, [{ name: 'tabbed-vendor', version: '1', release: '1', arch: 'noarch', vendor: 'Tab\tVendor' }]);
  const packages = await collectFrom(rpmCollector, rpmDatabase(dir));
  assert.deepEqual(packages.map((entry) => [entry.name, entry.version, entry.publisher]), [['tabbed-vendor', '1-1', 'Tab Vendor']]);
});

test('rpm: a multilib pair (x86_64 and i686 at one version) is two records, and an Epoch-only odd version is kept', { skip: rpmUnavailable ?? false }, async (t) => {
  const dir = await tempDir(t, 'ct-ops-rpm-multilib-');
  const installed = await installThenCollect(rpmCollector, rpmDatabase(dir), () =>
    installRpms(dir, [
      { name: 'libmulti', version: '2.36', release: '9.el9_4', arch: 'x86_64', file: '/usr/lib64/libmulti.txt' },
      { name: 'libmulti', version: '2.36', release: '9.el9_4', arch: 'i686', file: '/usr/lib/libmulti.txt' },
      { name: 'perl-Odd+Name_2', epoch: '4', version: '0.0.1^20240101git', release: '0.1', arch: 'noarch' },
    ]),
  );
  assert.deepEqual(installed, [
    { name: 'libmulti', version: '2.36-9.el9_4', architecture: 'i686', publisher: '', source: 'rpm' },
    { name: 'libmulti', version: '2.36-9.el9_4', architecture: 'x86_64', publisher: '', source: 'rpm' },
    { name: 'perl-Odd+Name_2', version: '4:0.0.1^20240101git-0.1', architecture: 'noarch', publisher: '', source: 'rpm' },
  ]);
});

// ---- pacman ----

interface Pkgbuild {
  readonly pkgname: string;
  readonly epoch?: string;
  readonly pkgver: string;
  readonly pkgrel: string;
  readonly arch: 'any' | 'x86_64';
  readonly pkgdesc: string;
  readonly license: string;
  /** makepkg's PACKAGER; without one makepkg records "Unknown Packager". */
  readonly packager?: string;
}

function pkgbuildFile(pkg: Pkgbuild): string {
  const quoted = (value: string) => `'${value.replaceAll("'", "'\\''")}'`;
  return [
    `pkgname=${pkg.pkgname}`,
    ...(pkg.epoch === undefined ? [] : [`epoch=${pkg.epoch}`]),
    `pkgver=${pkg.pkgver}`,
    `pkgrel=${pkg.pkgrel}`,
    `pkgdesc=${quoted(pkg.pkgdesc)}`,
    `arch=(${pkg.arch})`,
    `license=(${quoted(pkg.license)})`,
    'options=(!strip !debug)',
    'package() {',
    `  install -Dm644 /dev/null "$pkgdir/opt/${pkg.pkgname}/installed"`,
    '}',
    '',
  ].join('\n');
}

/** Builds the packages with makepkg (which refuses root) as nobody, and returns the package files. */
async function makepkg(dir: string, pkgbuilds: readonly Pkgbuild[]): Promise<string[]> {
  const build = join(dir, 'build');
  const packages = join(build, 'packages');
  await mkdir(packages, { recursive: true });
  // The system makepkg.conf with a fixed architecture, so the packages do not depend on the host's, and
  // no packager of its own. (An assignment, not unset: unset would drop the export of the caller's PACKAGER.)
  const config = join(build, 'makepkg.conf');
  await writeFile(config, 'source /etc/makepkg.conf\nCARCH=x86_64\nPKGEXT=.pkg.tar.gz\nPACKAGER=\n');
  for (const pkg of pkgbuilds) {
    await mkdir(join(build, pkg.pkgname));
    await writeFile(join(build, pkg.pkgname, 'PKGBUILD'), pkgbuildFile(pkg));
  }
  const nobody = (flag: string) => Number(execFileSync('id', [flag, 'nobody'], { encoding: 'utf8' }).trim());
  const [uid, gid] = [nobody('-u'), nobody('-g')];
  await chmod(dir, 0o755);
  await run('chown', ['-R', `${uid}:${gid}`, build]);
  await Promise.all(
    pkgbuilds.map((pkg) =>
      run('makepkg', ['--config', config, '--nodeps', '--skipinteg', '--nocheck', '--noconfirm'], {
        cwd: join(build, pkg.pkgname),
        uid,
        gid,
        maxBuffer: TOOL_OUTPUT_BYTES,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: build, BUILDDIR: join(build, 'work'), PKGDEST: packages, LC_ALL: 'C.UTF-8', ...(pkg.packager === undefined ? {} : { PACKAGER: pkg.packager }) },
      }),
    ),
  );
  return pkgbuilds.map((pkg) => join(packages, `${pkg.pkgname}-${pkg.epoch === undefined ? '' : `${pkg.epoch}:`}${pkg.pkgver}-${pkg.pkgrel}-${pkg.arch}.pkg.tar.gz`));
}

test('pacman: real pacman -Qi output of installed packages gives epoch:version-release, architecture, packager name and install date', { skip: pacmanUnavailable ?? false }, async (t) => {
  const dir = await tempDir(t, 'ct-ops-pacman-');
  const files = await makepkg(dir, [
    { pkgname: 'lib32-foo-bar2', epoch: '1', pkgver: '2.10.3', pkgrel: '4', arch: 'any', pkgdesc: 'Bibliothèque de test — ünïcödé', license: 'Licence Générale', packager: 'Jörg Müller <jorg@example.org>' },
    { pkgname: 'libstdc++6-compat', pkgver: '0.9.1.r45.gabc123', pkgrel: '2.1', arch: 'x86_64', pkgdesc: 'Key : value in a description', license: 'MIT', packager: '株式会社サンプル' },
    { pkgname: 'python3.11-tool', pkgver: '24.0', pkgrel: '1', arch: 'any', pkgdesc: 'Built without a packager', license: 'MIT' },
  ]);
  const root = join(dir, 'root');
  const config = join(dir, 'pacman.conf');
  await mkdir(join(root, 'var/lib/pacman'), { recursive: true });
  await writeFile(config, '[options]\nArchitecture = x86_64\nSigLevel = Never\n');
  const database = ['--config', config, '--root', root, '--dbpath', join(root, 'var/lib/pacman')];
  const installed = await installThenCollect(pacmanCollector, database, async () => {
    await run('pacman', ['-U', '--noconfirm', ...database, '--cachedir', join(dir, 'cache'), '--logfile', join(dir, 'pacman.log'), '--nodeps', '--nodeps', '--noscriptlet', ...files], { maxBuffer: TOOL_OUTPUT_BYTES });
  });
  assert.deepEqual(installed, [
    { name: 'lib32-foo-bar2', version: '1:2.10.3-4', architecture: 'any', publisher: 'Jörg Müller', source: 'pacman' },
    { name: 'libstdc++6-compat', version: '0.9.1.r45.gabc123-2.1', architecture: 'x86_64', publisher: '株式会社サンプル', source: 'pacman' },
    { name: 'python3.11-tool', version: '24.0-1', architecture: 'any', publisher: '', source: 'pacman' },
  ]);
});
