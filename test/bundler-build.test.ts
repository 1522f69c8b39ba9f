import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { loadAgentConfig } from '../agent/config/load.ts';
import { createEnrolmentToken } from '../appliance/enrolment/tokens.ts';
import { certificateFingerprint, createCa } from '../appliance/pki/certificates.ts';
import { hashSecret } from '../appliance/lib/ids.ts';
import { inspectDatabase, openDatabase } from '../appliance/store/database.ts';
import { openStores, type Stores } from '../appliance/store/index.ts';
import { MIGRATIONS } from '../appliance/store/migrations/index.ts';
import { CtOpsError } from '../common/errors.ts';
import { parsePublicKeyFile } from '../common/minisign.ts';
import { buildBundle, bundleView, parseBundleRequest, verifyBundle, type BuildEnvironment, type BundleRequestInput, type BuiltBundle } from '../bundler/index.ts';
import { packageRoot } from '../common/package-root.ts';
import { createFixtureAppliance, tempDir, writeReleaseDir, type FixtureAppliance } from './helpers/bundler-fixtures.ts';

const ROOT = packageRoot();
const CLI = join(ROOT, 'bundler/main.ts');

function runBundleCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SOURCE_DATE_EPOCH: '', CT_OPS_ORG_TOKEN: '', ...env }, timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** smol-toml builds null-prototype tables; compare them as plain data. */
function readToml(path: string): Record<string, Record<string, any>> {
  return JSON.parse(JSON.stringify(parseToml(readFileSync(path, 'utf8'))));
}

function extract(zip: string): string {
  const dir = tempDir('ct-ops-bundle-x-');
  execFileSync('unzip', ['-q', zip, '-d', dir]);
  return dir;
}

describe('ct-ops-bundle build', () => {
  let fixture: FixtureAppliance;
  let stores: Stores;
  let orgId: string;
  const cleanup: string[] = [];

  const env = (overrides: Partial<BuildEnvironment> = {}): BuildEnvironment => ({
    dataDir: fixture.dataDir,
    outDir: join(fixture.root, 'out', String(cleanup.length)),
    agentsDir: fixture.agentsDir,
    templatesDir: fixture.templatesDir,
    tokens: { stores, orgId },
    ...overrides,
  });
  /**
   * The CLI on the stopped appliance's data directory. This test's own database handle is closed
   * meanwhile: the CLI takes any process holding the database for the serving appliance (and would
   * then call its admin API).
   */
  const runCli = (args: readonly string[], env: NodeJS.ProcessEnv = {}) => {
    stores.close();
    try {
      return runBundleCli(args, env);
    } finally {
      stores = openStores(join(fixture.dataDir, 'appliance.db'));
    }
  };
  const build = (input: Partial<BundleRequestInput>, overrides: Partial<BuildEnvironment> = {}): Promise<BuiltBundle> => {
    cleanup.push('');
    return buildBundle(parseBundleRequest({ os: 'linux', arch: 'x64', address: 'ingest.example:9443', createdBy: 'tester', ...input }), env(overrides));
  };

  before(async () => {
    fixture = await createFixtureAppliance();
    stores = openStores(join(fixture.dataDir, 'appliance.db'));
    orgId = (await stores.organisations.ensureDefault(Date.now())).id;
  });
  after(() => {
    stores.close();
    rmSync(fixture.root, { recursive: true, force: true });
  });

  test('a linux bundle unzips into one folder that sha256sum -c and minisign -V accept', async () => {
    const built = await build({ token: { mode: 'none' } });
    assert.equal(built.file, 'ct-ops-agent-0.1.0-linux-x64.zip');
    const dir = extract(built.path);
    try {
      const top = join(dir, 'ct-ops-agent-0.1.0-linux-x64');
      assert.deepEqual(execFileSync('ls', ['-A', dir], { encoding: 'utf8' }).trim().split('\n'), ['ct-ops-agent-0.1.0-linux-x64']);
      const listed = execFileSync('ls', ['-A', top], { encoding: 'utf8' }).trim().split('\n').sort();
      assert.deepEqual(listed, [
        'README.md', 'SHA256SUMS', 'SHA256SUMS.minisig', 'TARGET', 'agent.toml', 'ca.crt', 'ct-ops-agent',
        'ct-ops-agent-helper.path', 'ct-ops-agent-helper.sh', 'ct-ops-agent-helper.service', 'ct-ops-agent.service', 'install.sh', 'manifest.json', 'uninstall.sh',
      ].sort());
      execFileSync('sha256sum', ['--strict', '-c', 'SHA256SUMS'], { cwd: top, stdio: 'pipe' });
      const minisign = execFileSync('minisign', ['-Vm', 'SHA256SUMS', '-p', join(fixture.dataDir, 'bundle.pub')], { cwd: top, encoding: 'utf8' });
      assert.match(minisign, new RegExp(`bundle:${built.bundleId}`));
      assert.equal(statSync(join(top, 'ct-ops-agent')).mode & 0o777, 0o755);
      assert.equal(statSync(join(top, 'install.sh')).mode & 0o777, 0o755);
      assert.equal(statSync(join(top, 'agent.toml')).mode & 0o777, 0o644);
      assert.equal(readFileSync(join(top, 'TARGET'), 'utf8'), 'linux-x64\n');
      assert.deepEqual(readFileSync(join(top, 'ca.crt')), readFileSync(join(fixture.dataDir, 'ca.crt')));
      // SHA256SUMS: every file but itself and its signature, sorted by name.
      const names = readFileSync(join(top, 'SHA256SUMS'), 'utf8').trim().split('\n').map((line) => line.slice(66));
      assert.deepEqual(names, listed.filter((name) => name !== 'SHA256SUMS' && name !== 'SHA256SUMS.minisig').sort((a, b) => (a < b ? -1 : 1)));

      const manifest = JSON.parse(readFileSync(join(top, 'manifest.json'), 'utf8'));
      assert.deepEqual(Object.keys(manifest), ['format', 'bundle_id', 'created_at', 'created_by', 'os', 'arch', 'agent_version', 'ingest_address', 'ca_fingerprint_sha256', 'ca_fingerprints_sha256', 'token', 'files']);
      assert.equal(manifest.bundle_id, built.bundleId);
      assert.deepEqual(manifest.token, { mode: 'none' });
      assert.equal(manifest.ca_fingerprint_sha256, built.caFingerprint);
      assert.deepEqual(manifest.ca_fingerprints_sha256, [built.caFingerprint]);
      assert.deepEqual(manifest.files.map((file: { path: string }) => file.path), names.filter((name) => name !== 'manifest.json'));
      assert.deepEqual(manifest.files.find((file: { path: string }) => file.path === 'ct-ops-agent').mode, '0755');

      const readme = readFileSync(join(top, 'README.md'), 'utf8');
      assert.match(readme, /minisign -Vm SHA256SUMS -p/);
      assert.match(readme, /sha256sum -c SHA256SUMS/);
      assert.ok(readme.includes(built.caFingerprint) && readme.includes(built.bundleKeyId) && readme.includes(built.releaseKeyId));
      assert.match(readme, /no enrolment token/);
      assert.match(readme, /CT_OPS_ORG_TOKEN/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a bundle built during a CA rotation names both CAs in its README and manifest, and its reproducible id covers both', async () => {
    const pinned = { sourceDateEpoch: 1_764_331_200 };
    const alone = await build({ token: { mode: 'none' } }, pinned);
    const nextCa = await createCa(new Date());
    writeFileSync(join(fixture.dataDir, 'ca-next.crt'), nextCa.certPem);
    try {
      const overlap = await build({ token: { mode: 'none' } }, pinned);
      assert.notEqual(overlap.bundleId, alone.bundleId, 'another ca.crt, another bundle');
      const dir = extract(overlap.path);
      try {
        const top = join(dir, 'ct-ops-agent-0.1.0-linux-x64');
        const fingerprints = [alone.caFingerprint, certificateFingerprint(nextCa.certPem)];
        assert.deepEqual(JSON.parse(readFileSync(join(top, 'manifest.json'), 'utf8')).ca_fingerprints_sha256, fingerprints);
        const readme = readFileSync(join(top, 'README.md'), 'utf8');
        assert.ok(fingerprints.every((fingerprint) => readme.includes(fingerprint)), readme);
        assert.match(readme, /next appliance CA \(rotation in progress\)/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      rmSync(join(fixture.dataDir, 'ca-next.crt'));
    }
  });

  test('agent.toml carries the address, OS paths, tags and release key, and the agent loader accepts it', async () => {
    const built = await build({ token: { mode: 'none' }, tags: { site: 'lab', rack: 'r1' } });
    const dir = extract(built.path);
    try {
      const file = join(dir, 'ct-ops-agent-0.1.0-linux-x64', 'agent.toml');
      const toml = readToml(file);
      assert.deepEqual(toml.ingest, { address: 'ingest.example:9443', ca_cert_file: '/etc/ct-ops/ca.crt' });
      assert.equal(toml.agent!.org_token, undefined);
      assert.equal(toml.agent!.data_dir, '/var/lib/ct-ops/agent');
      assert.equal(toml.agent!.heartbeat_interval_secs, 30);
      assert.deepEqual(toml.agent!.tags, { rack: 'r1', site: 'lab' });
      assert.equal(toml.update!.release_public_key, readFileSync(join(fixture.dataDir, 'release.pub'), 'utf8').trimEnd());
      parsePublicKeyFile(toml.update!.release_public_key as string);
      const { config } = loadAgentConfig({ file, env: { CT_OPS_INGEST_CA_CERT: join(dir, 'ct-ops-agent-0.1.0-linux-x64', 'ca.crt') } });
      assert.equal(config.ingest.addresses[0]!.target, 'ingest.example:9443');
      assert.deepEqual(config.tags, { rack: 'r1', site: 'lab' });
      assert.equal(config.installBundleId, built.bundleId, 'the agent claims the bundle it came from');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a bundle for several ingest instances lists them in agent.toml, the manifest and the README, and the agent loader takes them in order', async () => {
    const built = await build({ token: { mode: 'none' }, address: ['ingest-a.example:9443', 'bücher.example:9443', '10.0.0.3:9443'] });
    const view = bundleView(built);
    assert.deepEqual([view.ingest_address, view.ingest_addresses], ['ingest-a.example:9443', ['ingest-a.example:9443', 'xn--bcher-kva.example:9443', '10.0.0.3:9443']]);
    const dir = extract(built.path);
    try {
      const folder = join(dir, 'ct-ops-agent-0.1.0-linux-x64');
      const file = join(folder, 'agent.toml');
      assert.deepEqual(readToml(file).ingest, { addresses: ['ingest-a.example:9443', 'xn--bcher-kva.example:9443', '10.0.0.3:9443'], ca_cert_file: '/etc/ct-ops/ca.crt' });
      const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8')) as Record<string, unknown>;
      assert.deepEqual([manifest.ingest_address, manifest.ingest_addresses], ['ingest-a.example:9443', ['ingest-a.example:9443', 'xn--bcher-kva.example:9443', '10.0.0.3:9443']]);
      assert.match(readFileSync(join(folder, 'README.md'), 'utf8'), /for the appliance at `ingest-a\.example:9443`, `bücher\.example:9443 \(xn--bcher-kva\.example:9443\)`, `10\.0\.0\.3:9443`\./);
      const { config } = loadAgentConfig({ file, env: { CT_OPS_INGEST_CA_CERT: join(folder, 'ca.crt') } });
      assert.deepEqual(config.ingest.addresses.map((address) => address.target), ['ingest-a.example:9443', 'xn--bcher-kva.example:9443', '10.0.0.3:9443']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('windows and darwin bundles use their own paths, executable name and scripts', async () => {
    const windows = await build({ os: 'windows', arch: 'arm64', token: { mode: 'none' } });
    const darwin = await build({ os: 'darwin', arch: 'arm64', token: { mode: 'none' } });
    const wdir = extract(windows.path);
    const ddir = extract(darwin.path);
    try {
      const wtop = join(wdir, 'ct-ops-agent-0.1.0-windows-arm64');
      for (const name of ['ct-ops-agent.exe', 'install.ps1', 'uninstall.ps1', 'ct-ops-agent-service.exe', 'ct-ops-agent-service.xml', 'ct-ops-agent-service.exe.config']) assert.ok(existsSync(join(wtop, name)), name);
      assert.ok(!existsSync(join(wtop, 'install.sh')));
      const wtoml = readToml(join(wtop, 'agent.toml'));
      assert.equal(wtoml.ingest!.ca_cert_file, 'C:\\ProgramData\\CT-Ops\\ca.crt');
      assert.equal(wtoml.agent!.data_dir, 'C:\\ProgramData\\CT-Ops\\agent');
      assert.match(readFileSync(join(wtop, 'README.md'), 'utf8'), /Get-FileHash -Algorithm SHA256/);
      const dtop = join(ddir, 'ct-ops-agent-0.1.0-darwin-arm64');
      for (const name of ['ct-ops-agent', 'install.sh', 'uninstall.sh', 'ct-ops-agent-helper.sh', 'com.ct-ops.agent.plist', 'com.ct-ops.agent-helper.plist']) assert.ok(existsSync(join(dtop, name)), name);
      const dtoml = readToml(join(dtop, 'agent.toml'));
      assert.equal(dtoml.agent!.data_dir, '/Library/Application Support/CT-Ops/agent');
      assert.equal(readFileSync(join(dtop, 'TARGET'), 'utf8'), 'darwin-arm64\n');
    } finally {
      rmSync(wdir, { recursive: true, force: true });
      rmSync(ddir, { recursive: true, force: true });
    }
  });

  test('token mode new records a single-use install-bundle token and embeds only its secret in agent.toml', async () => {
    const built = await build({ token: { mode: 'new', expiresInMs: 2 * 86_400_000 }, tags: { site: 'lab' } });
    assert.equal(built.token.mode, 'new');
    const token = await stores.enrolmentTokens.get(built.token.id!);
    assert.ok(token);
    assert.equal(token.source, 'install-bundle');
    assert.equal(token.maxUses, 1);
    assert.deepEqual(token.metadata, { os: 'linux', arch: 'x64', bundle_id: built.bundleId, created_by: 'tester' });
    assert.ok(Math.abs(token.expiresAt - token.createdAt - 2 * 86_400_000) < 1000);
    assert.equal(statSync(built.path).mode & 0o777, 0o600, 'a zip holding a secret is owner-only');
    const record = await stores.installBundles.get(built.bundleId);
    assert.deepEqual(
      [record?.createdBy, record?.tokenMode, record?.tokenId, record?.zipFile, record?.zipSize, record?.zipSha256, record?.caFingerprint, record?.withdrawnAt],
      ['tester', 'new', token.id, built.file, built.size, built.sha256, built.caFingerprint, null],
      'the build is recorded in the database it took its token from',
    );
    const dir = extract(built.path);
    try {
      const top = join(dir, 'ct-ops-agent-0.1.0-linux-x64');
      const toml = readToml(join(top, 'agent.toml'));
      const secret = toml.agent!.org_token!;
      assert.match(secret, /^tok_/);
      assert.equal((await stores.enrolmentTokens.findBySecretHash(hashSecret(secret)))?.id, token.id);
      const manifestText = readFileSync(join(top, 'manifest.json'), 'utf8');
      assert.ok(!manifestText.includes(secret) && !manifestText.includes('tok_'), 'the manifest never holds the secret');
      assert.deepEqual(JSON.parse(manifestText).token, { mode: 'new', id: token.id, expires_at: new Date(token.expiresAt).toISOString() });
      for (const name of ['README.md', 'SHA256SUMS', 'SHA256SUMS.minisig']) assert.ok(!readFileSync(join(top, name), 'utf8').includes(secret), name);
      const readme = readFileSync(join(top, 'README.md'), 'utf8');
      assert.match(readme, /contains an enrolment secret/);
      assert.match(readme, /treat the media as sensitive/i);
      assert.ok(readme.includes(new Date(token.expiresAt).toISOString()));
      assert.match(readme, /single use/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the CLI with the default token mode creates a token visible in the appliance database', async () => {
    const out = join(fixture.root, 'cli-new');
    const result = runCli(['build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'arm64', '--address', 'ingest.example:9443', '--out', out, '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const printed = JSON.parse(result.stdout);
    assert.equal(printed.path, join(out, 'ct-ops-agent-0.1.0-linux-arm64.zip'));
    assert.match(printed.bundle_id, /^bnd_[0-9a-f]{20}$/);
    assert.match(printed.sha256, /^[0-9a-f]{64}$/);
    assert.equal(printed.token.mode, 'new');
    assert.ok(!result.stdout.includes('tok_'), 'the secret is not printed');
    const token = await stores.enrolmentTokens.get(printed.token.id);
    assert.equal(token?.source, 'install-bundle');
    assert.equal(token?.metadata.bundle_id, printed.bundle_id);
    assert.equal(token?.metadata.arch, 'arm64');
    const plain = runCli(['build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'arm64', '--address', 'ingest.example:9443', '--token', 'none', '--out', out, '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout, `${join(out, 'ct-ops-agent-0.1.0-linux-arm64.zip')}\n`, 'piped: only the path, no progress');
    assert.equal(plain.stderr, '');
  });

  test('build --help lists the exit code of every failure a build through the admin API can end in', () => {
    const help = runBundleCli(['build', '--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /69 +the running appliance's admin API cannot be reached, or the download broke off or does\n +not have the sha256/);
    assert.match(help.stdout, /75 +.*\n.*ERR_STORAGE_UNAVAILABLE/);
    assert.match(help.stdout, /77 +the admin credential in --data-dir was refused \(ERR_ADMIN_UNAUTHENTICATED\)/);
    assert.match(help.stdout, /73 +the bundle or output directory cannot be written \(checked before the appliance builds/);
  });

  test('the CLI never opens a database another process holds, even one without the data directory lock', async () => {
    const before = (await stores.enrolmentTokens.list(orgId)).length;
    const held = runBundleCli(['build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--out', join(fixture.root, 'cli-held'), '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir]);
    assert.equal(held.code, 75, held.stderr);
    assert.match(held.stderr, /ERR_APPLIANCE_RUNNING/, 'the lock was free, but this test process has the database open');
    assert.equal((await stores.enrolmentTokens.list(orgId)).length, before, 'nothing was written behind the holder');
  });

  test("on a stopped appliance whose database is of an older version the CLI refuses (start the appliance once) and migrates nothing", async () => {
    const old = await createFixtureAppliance();
    try {
      const path = join(old.dataDir, 'appliance.db');
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
      const previous = MIGRATIONS.length - 1;
      openDatabase(path, MIGRATIONS.slice(0, previous)).close();
      const result = runBundleCli(['build', '--data-dir', old.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--out', join(old.root, 'out'), '--agents-dir', old.agentsDir, '--templates-dir', old.templatesDir]);
      assert.equal(result.code, 75, result.stderr);
      assert.match(result.stderr, /ERR_SCHEMA_OUTDATED/);
      assert.match(result.stderr, new RegExp(`version ${previous}, this build needs ${MIGRATIONS.length}: start the appliance once`));
      assert.equal(inspectDatabase(path).schemaVersion, previous, 'the schema was not upgraded');
      assert.ok(!existsSync(join(old.root, 'out')), 'no bundle');
      const none = runBundleCli(['build', '--data-dir', old.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--token', 'none', '--out', join(old.root, 'out'), '--agents-dir', old.agentsDir, '--templates-dir', old.templatesDir]);
      assert.equal(none.code, 0, 'token mode none needs no database');
    } finally {
      rmSync(old.root, { recursive: true, force: true });
    }
  });

  test('an existing token is embedded only with its secret, and refused when wrong, used up, revoked or unknown', async () => {
    const now = Date.now();
    const request = { label: 'ops', expiresInMs: 86_400_000, maxUses: 1, autoApprove: false, tags: {}, createdBy: 'admin', source: 'admin', metadata: {} };
    const good = await createEnrolmentToken(stores, orgId, request, now);
    const built = await build({ token: { mode: 'existing', id: good.token.id, secret: good.secret } });
    assert.deepEqual(built.token, { mode: 'existing', id: good.token.id, expiresAt: new Date(good.token.expiresAt).toISOString() });
    const other = await createEnrolmentToken(stores, orgId, request, now);
    await assert.rejects(build({ token: { mode: 'existing', id: good.token.id, secret: other.secret } }), (error: CtOpsError) => error.code === 'ERR_BUNDLE_TOKEN_UNUSABLE' && error.details.reason === 'secret_mismatch');
    assert.ok(await stores.enrolmentTokens.consume(other.token.id, now));
    await assert.rejects(build({ token: { mode: 'existing', id: other.token.id, secret: other.secret } }), (error: CtOpsError) => error.code === 'ERR_BUNDLE_TOKEN_UNUSABLE' && error.details.reason === 'used-up');
    await stores.enrolmentTokens.revoke(good.token.id, now);
    await assert.rejects(build({ token: { mode: 'existing', id: good.token.id, secret: good.secret } }), (error: CtOpsError) => error.code === 'ERR_BUNDLE_TOKEN_UNUSABLE' && error.details.reason === 'revoked');
    await assert.rejects(build({ token: { mode: 'existing', id: 'etk_00000000000000000000', secret: good.secret } }), { code: 'ERR_ENROLMENT_TOKEN_NOT_FOUND' });

    const fresh = await createEnrolmentToken(stores, orgId, request, now);
    const args = ['build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--token', fresh.token.id, '--out', join(fixture.root, 'cli-existing'), '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir];
    const missingSecret = runCli(args);
    assert.equal(missingSecret.code, 64);
    assert.match(missingSecret.stderr, /CT_OPS_ORG_TOKEN/);
    const wrong = runCli(args, { CT_OPS_ORG_TOKEN: other.secret });
    assert.equal(wrong.code, 65);
    assert.match(wrong.stderr, /ERR_BUNDLE_TOKEN_UNUSABLE/);
    const secretFile = join(fixture.root, 'secret.txt');
    writeFileSync(secretFile, `${fresh.secret}\n`, { mode: 0o600 });
    const ok = runCli([...args, '--token-secret-file', secretFile]);
    assert.equal(ok.code, 0, ok.stderr);
    const unknown = runCli(['build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--token', 'etk_ffffffffffffffffffff', '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir], { CT_OPS_ORG_TOKEN: fresh.secret });
    assert.equal(unknown.code, 66);
  });

  test('hostile tag values end up as inert TOML strings, nowhere else', async () => {
    const marker = join(fixture.root, 'pwned');
    const hostile = { cmd: `$(touch ${marker})`, quote: '"; rm -rf / #', tick: '`id`', ps: "'; Remove-Item C:\\ -Recurse; '", nl: 'a\\nb = 1' };
    const built = await build({ token: { mode: 'none' }, tags: hostile });
    const dir = extract(built.path);
    try {
      const top = join(dir, 'ct-ops-agent-0.1.0-linux-x64');
      const toml = readToml(join(top, 'agent.toml'));
      assert.deepEqual(toml.agent!.tags, Object.fromEntries(Object.entries(hostile).sort(([a], [b]) => (a < b ? -1 : 1))));
      assert.deepEqual(Object.keys(toml.agent!).sort(), ['data_dir', 'heartbeat_interval_secs', 'install_bundle_id', 'tags'], 'no key was smuggled in');
      for (const name of ['install.sh', 'uninstall.sh', 'README.md', 'manifest.json', 'ct-ops-agent.service']) {
        const text = readFileSync(join(top, name), 'utf8');
        for (const value of Object.values(hostile)) assert.ok(!text.includes(value), `${name} holds ${value}`);
      }
      execFileSync('sh', ['./install.sh'], { cwd: top, stdio: 'pipe' });
      assert.ok(!existsSync(marker), 'no command ran');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('addresses, tags and labels that could carry code or control characters are refused', () => {
    const bad = (input: Partial<BundleRequestInput>, field: string): void => {
      assert.throws(() => parseBundleRequest({ os: 'linux', arch: 'x64', address: 'ingest.example:9443', createdBy: 'tester', ...input }), (error: CtOpsError) => error.code === 'ERR_INVALID_ARGUMENT' && error.details.field === field, JSON.stringify(input));
    };
    bad({ address: '$(reboot):9443' }, 'address');
    bad({ address: 'ingest.example' }, 'address');
    bad({ address: 'ingest.example:70000' }, 'address');
    bad({ address: 'a b:9443' }, 'address');
    bad({ address: [] }, 'address');
    bad({ address: ['a.example:9443', 'A.example:9443'] }, 'address');
    bad({ address: Array.from({ length: 17 }, (_, i) => `i${i}.example:9443`) }, 'address');
    bad({ address: ['a.example:9443', '$(reboot):9443'] }, 'address');
    bad({ tags: { 'bad key': 'x' } }, 'tags');
    bad({ tags: { 'k$(x)': 'x' } }, 'tags');
    bad({ tags: { site: 'line\nbreak' } }, 'tags');
    bad({ tags: { site: 'bell\u0007' } }, 'tags');
    bad({ tags: { site: 'rtl\u202eoverride' } }, 'tags');
    bad({ tags: { site: 'x'.repeat(257) } }, 'tags');
    bad({ tags: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }, 'tags');
    bad({ label: 'esc\u001b[31m' }, 'label');
    bad({ os: 'plan9' }, 'os');
    bad({ token: { mode: 'new', expiresInMs: 1000 } }, 'expires');
    assert.doesNotThrow(() => parseBundleRequest({ os: 'linux', arch: 'x64', address: '[::1]:9443', tags: { 'a.b_c-d': 'Zürich ✓ 東京' }, createdBy: 'tester' }));
    const usage = runCli(['build', '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--tag', 'novalue']);
    assert.equal(usage.code, 65);
    assert.match(usage.stderr, /ERR_INVALID_ARGUMENT/);
    const missing = runCli(['build', '--os', 'linux', '--address', 'ingest.example:9443']);
    assert.equal(missing.code, 64);
  });

  test('an executable that does not match the signed release checksums is refused before any token is made', async () => {
    const agentsDir = join(fixture.root, 'agents-tampered');
    const release = writeReleaseDir(agentsDir, fixture.releaseKey);
    writeFileSync(join(release, 'ct-ops-agent-linux-x64'), 'evil\n');
    const before = (await stores.enrolmentTokens.list(orgId)).length;
    await assert.rejects(build({ token: { mode: 'new' } }, { agentsDir }), { code: 'ERR_BUNDLE_INPUT_UNTRUSTED' });
    assert.equal((await stores.enrolmentTokens.list(orgId)).length, before, 'no token was created');

    const foreign = join(fixture.root, 'agents-foreign');
    const { signingKeyFromSeed } = await import('../common/minisign.ts');
    writeReleaseDir(foreign, signingKeyFromSeed(new Uint8Array(32).fill(7)));
    await assert.rejects(build({ token: { mode: 'none' } }, { agentsDir: foreign }), { code: 'ERR_BUNDLE_INPUT_UNTRUSTED' });
    await assert.rejects(build({ token: { mode: 'none' } }, { agentsDir: join(fixture.root, 'no-agents') }), { code: 'ERR_BUNDLE_INPUT_MISSING' });
    const noTemplates = join(fixture.root, 'empty-templates');
    mkdirSync(noTemplates, { recursive: true });
    await assert.rejects(build({ token: { mode: 'none' } }, { templatesDir: noTemplates }), { code: 'ERR_BUNDLE_INPUT_MISSING' });
  });

  test('the same inputs and SOURCE_DATE_EPOCH give a byte-identical zip in any time zone', async () => {
    const args = (out: string, token: string[]): string[] => [
      'build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--tag', 'site:lab', '--label', 'repro',
      ...token, '--out', out, '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir, '--created-by', 'release', '--json',
    ];
    const first = runCli(args(join(fixture.root, 'repro-1'), ['--token', 'none']), { SOURCE_DATE_EPOCH: '1764331200', TZ: 'UTC' });
    const second = runCli(args(join(fixture.root, 'repro-2'), ['--token', 'none']), { SOURCE_DATE_EPOCH: '1764331200', TZ: 'Pacific/Chatham' });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    const a = JSON.parse(first.stdout);
    const b = JSON.parse(second.stdout);
    assert.deepEqual(readFileSync(a.path), readFileSync(b.path));
    assert.equal(a.sha256, b.sha256);
    assert.equal(a.bundle_id, b.bundle_id);
    assert.equal(a.created_at, '2025-11-28T12:00:00.000Z');
    const listing = execFileSync('unzip', ['-Z', '-T', a.path], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    for (const line of listing.split('\n').filter((candidate) => candidate.includes('ct-ops-agent-0.1.0-linux-x64/'))) assert.match(line, /20251128\.120000/);

    const token = await createEnrolmentToken(stores, orgId, { label: '', expiresInMs: 86_400_000, maxUses: 5, autoApprove: false, tags: {}, createdBy: 'admin', source: 'admin', metadata: {} }, Date.now());
    const third = runCli(args(join(fixture.root, 'repro-3'), ['--token', token.token.id]), { SOURCE_DATE_EPOCH: '1764331200', CT_OPS_ORG_TOKEN: token.secret });
    const fourth = runCli(args(join(fixture.root, 'repro-4'), ['--token', token.token.id]), { SOURCE_DATE_EPOCH: '1764331200', CT_OPS_ORG_TOKEN: token.secret, TZ: 'America/St_Johns' });
    assert.equal(third.code, 0, third.stderr);
    assert.deepEqual(readFileSync(JSON.parse(third.stdout).path), readFileSync(JSON.parse(fourth.stdout).path));
    assert.notEqual(JSON.parse(third.stdout).bundle_id, a.bundle_id);

    const unpinned = runCli(args(join(fixture.root, 'repro-5'), ['--token', 'none']));
    assert.notEqual(JSON.parse(unpinned.stdout).bundle_id, a.bundle_id, 'without SOURCE_DATE_EPOCH each build is its own bundle');
  });

  const hostArch = process.arch === 'arm64' ? 'arm64' : 'x64';
  test('the repository installer accepts a bundle built from its own scripts and units (dry run)', async () => {
    const built = await build({ arch: hostArch, token: { mode: 'none' } }, { templatesDir: ROOT });
    const bundlePub = join(fixture.dataDir, 'bundle.pub');
    const report = await verifyBundle(built.path, parsePublicKeyFile(readFileSync(bundlePub, 'utf8')));
    assert.deepEqual(report.problems, []);
    const darwin = await build({ os: 'darwin', arch: 'arm64', token: { mode: 'none' } }, { templatesDir: ROOT });
    assert.deepEqual((await verifyBundle(darwin.path, parsePublicKeyFile(readFileSync(bundlePub, 'utf8')))).problems, []);
    const dir = extract(built.path);
    try {
      const result = spawnSync('sh', ['./install.sh', '--dry-run', '--bundle-pubkey', bundlePub], { cwd: join(dir, `ct-ops-agent-0.1.0-linux-${hostArch}`), encoding: 'utf8' });
      assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /signature verified/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
