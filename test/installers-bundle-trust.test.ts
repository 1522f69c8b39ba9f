import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { blake2b512, keyIdHex, publicKeyFile, signDigest, signingKeyFromSeed, type SigningKey } from '../common/minisign.ts';
import { assembleLinuxBundleFolder, chrootUnavailable, diffListings, suiteRoots, TestRoot, type RunResult } from './helpers/chroot.ts';

/*
 * install.sh on the host (issue 8, items 1 and 9): the bundle key the operator got out of band,
 * bundle file names, and two installs at once. The real install.sh runs as root in a throwaway
 * Debian root; the bundles are signed like the appliance signs them (common/minisign.ts).
 */

const CA = '-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n';
const AGENT_TOML = '[ingest]\naddress = "127.0.0.1:9443"\nca_cert_file = "/etc/ct-ops/ca.crt"\n\n[agent]\ndata_dir = "/var/lib/ct-ops/agent"\n';
const agent = (label: string): string => `#!/bin/sh\necho "stand-in ${label}"\n`;
/** The base64 line of a public key: what the operator passes as --bundle-key. */
const keyLine = (key: SigningKey): string => publicKeyFile(key).split('\n')[1]!;
const EXCLUDED = ['proc', 'sys', 'dev', 'run', 'bundle'];

describe('install.sh trusts the bundle only as far as the operator says', { skip: chrootUnavailable(), timeout: 20 * 60_000 }, () => {
  const bundleKey = signingKeyFromSeed(randomBytes(32));
  const newRoot = suiteRoots();

  /** An extracted bundle folder inside the root (path as seen inside), signed with `key` unless null. */
  function bundleIn(root: TestRoot, name: string, options: { key?: SigningKey | null; label?: string; version?: string } = {}): string {
    const parent = root.at(`bundle/${name}`);
    mkdirSync(parent, { recursive: true });
    const dir = assembleLinuxBundleFolder(parent, { agent: agent(options.label ?? name), agentToml: AGENT_TOML, caCert: CA }, options.version);
    const key = options.key === undefined ? bundleKey : options.key;
    if (key) {
      const sums = readFileSync(`${dir}/SHA256SUMS`);
      writeFileSync(`${dir}/SHA256SUMS.minisig`, signDigest(blake2b512(sums), key, `ct-ops bundle ${name}`, 'bundle signature'));
    }
    return dir.slice(root.path.length);
  }
  const install = (root: TestRoot, bundle: string, ...args: string[]): RunResult => root.run([`${bundle}/install.sh`, '--no-start', ...args]);

  describe('--bundle-key: the full public key, verified with openssl when minisign is absent', () => {
    let root: TestRoot;
    before(() => {
      root = newRoot();
      root.addHostTool('/usr/bin/openssl');
    });

    test('a bundle re-signed by another key that carries the same key id is refused (exit 4) and nothing changes', () => {
      const baseline = root.listing(EXCLUDED);
      const impostor: SigningKey = { ...signingKeyFromSeed(randomBytes(32)), keyId: bundleKey.keyId };
      const forged = bundleIn(root, 'forged', { key: impostor });
      const refused = install(root, forged, '--bundle-key', keyLine(bundleKey));
      assert.equal(refused.code, 4, refused.stdout + refused.stderr);
      assert.match(refused.stderr, new RegExp(`SHA256SUMS\\.minisig does not verify with bundle key ${keyIdHex(bundleKey.keyId)} \\(signature-mismatch\\)`));
      // The same with --bundle-key-id: the id matches, and still proves nothing.
      const withId = install(root, forged, '--bundle-key', keyLine(bundleKey), '--bundle-key-id', keyIdHex(bundleKey.keyId));
      assert.equal(withId.code, 4, withId.stdout + withId.stderr);
      assert.deepEqual(diffListings(baseline, root.listing(EXCLUDED)), []);
    });

    test('a bundle signed by another key (its own id) and a bundle without SHA256SUMS.minisig are refused (exit 4)', () => {
      const other = install(root, bundleIn(root, 'other', { key: signingKeyFromSeed(randomBytes(32)) }), '--bundle-key', keyLine(bundleKey));
      assert.equal(other.code, 4, other.stdout + other.stderr);
      assert.match(other.stderr, /signed-by-another-key/);
      const unsigned = install(root, bundleIn(root, 'unsigned', { key: null }), '--bundle-key', keyLine(bundleKey));
      assert.equal(unsigned.code, 4, unsigned.stdout + unsigned.stderr);
      assert.match(unsigned.stderr, /SHA256SUMS\.minisig is missing/);
    });

    test('the verifier is install.sh\'s own: a bundle whose helper script "verifies" anything, with SHA256SUMS recomputed, is refused (exit 4)', () => {
      const baseline = root.listing(EXCLUDED);
      const swapped = bundleIn(root, 'helper-swap');
      const dir = root.at(swapped);
      // What an attacker with the media writes: a helper whose signature check always passes, and sums that match it.
      writeFileSync(`${dir}/ct-ops-agent-helper.sh`, '#!/bin/sh\necho "trusted comment: anything"\nexit 0\n', { mode: 0o755 });
      const sums = readFileSync(`${dir}/SHA256SUMS`, 'utf8').split('\n').filter(Boolean).map((line) => {
        const name = line.slice(66);
        return `${createHash('sha256').update(readFileSync(`${dir}/${name}`)).digest('hex')}  ${name}`;
      });
      writeFileSync(`${dir}/SHA256SUMS`, `${sums.join('\n')}\n`);
      const refused = install(root, swapped, '--bundle-key', keyLine(bundleKey));
      assert.equal(refused.code, 4, refused.stdout + refused.stderr);
      assert.match(refused.stderr, /SHA256SUMS\.minisig does not verify .*signature-mismatch/);
      assert.deepEqual(diffListings(baseline, root.listing(EXCLUDED)), []);
    });

    test('--bundle-key-id alone is refused as proof (exit 1); with a key, a different id is a usage error', () => {
      const bundle = bundleIn(root, 'ids');
      const alone = install(root, bundle, '--bundle-key-id', keyIdHex(bundleKey.keyId));
      assert.equal(alone.code, 1, alone.stdout + alone.stderr);
      assert.match(alone.stderr, /--bundle-key-id alone proves nothing/);
      const mismatch = install(root, bundle, '--bundle-key', keyLine(bundleKey), '--bundle-key-id', '0123456789ABCDEF');
      assert.equal(mismatch.code, 1, mismatch.stdout + mismatch.stderr);
      assert.match(mismatch.stderr, new RegExp(`has key id ${keyIdHex(bundleKey.keyId)}, not 0123456789ABCDEF`));
    });

    test('the right key installs (also given as a file with --bundle-pubkey, and with its id)', () => {
      const good = install(root, bundleIn(root, 'good'), '--bundle-key', keyLine(bundleKey), '--bundle-key-id', keyIdHex(bundleKey.keyId).toLowerCase());
      assert.equal(good.code, 0, good.stdout + good.stderr);
      assert.match(good.stdout, new RegExp(`SHA256SUMS signature verified with bundle key ${keyIdHex(bundleKey.keyId)}`));
      assert.doesNotMatch(good.stderr, /NOT checked/);
      assert.equal(readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8'), agent('good'));
      writeFileSync(root.at('bundle.pub'), publicKeyFile(bundleKey));
      const asFile = install(root, bundleIn(root, 'file'), '--bundle-pubkey', '/bundle.pub');
      assert.equal(asFile.code, 0, asFile.stdout + asFile.stderr);
      assert.equal(readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8'), agent('file'));
    });

    test('with neither minisign nor openssl, a given key cannot be checked: refused (exit 5)', () => {
      const openssl = root.at('usr/bin/openssl');
      renameSync(openssl, `${openssl}.hidden`);
      try {
        const result = install(root, bundleIn(root, 'notool'), '--bundle-key', keyLine(bundleKey));
        assert.equal(result.code, 5, result.stdout + result.stderr);
        assert.match(result.stderr, /neither minisign nor openssl is installed/);
      } finally {
        renameSync(`${openssl}.hidden`, openssl);
      }
    });
  });

  test('--bundle-key with minisign: the right key installs, the same-id impostor is refused', () => {
    const root = newRoot();
    root.addHostTool('/usr/bin/minisign');
    assert.ok(!existsSync(root.at('usr/bin/openssl')), 'the Debian root has no openssl: minisign does the check');
    const impostor: SigningKey = { ...signingKeyFromSeed(randomBytes(32)), keyId: bundleKey.keyId };
    const refused = install(root, bundleIn(root, 'forged', { key: impostor }), '--bundle-key', keyLine(bundleKey));
    assert.equal(refused.code, 4, refused.stdout + refused.stderr);
    const good = install(root, bundleIn(root, 'good'), '--bundle-key', keyLine(bundleKey));
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /SHA256SUMS signature verified/);
  });

  test('without a bundle key the install goes ahead and warns that the host trusts the media', () => {
    const root = newRoot();
    const result = install(root, bundleIn(root, 'nokey', { key: null }));
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stderr, /WARNING: the bundle's signature was NOT checked \(no --bundle-key\): this host trusts the media/);
  });

  describe('bundle file names are [A-Za-z0-9._-] only', () => {
    const hostile: Array<[string, string]> = [
      ['evil<newline>agent.toml (issue 8)', 'evil\nagent.toml'],
      ['a name with a space', 'read me.txt'],
      ['a name with a backslash', 'agent.toml\\x'],
      ['a name with a right-to-left override', 'install\u202Ehs.txt'],
    ];
    for (const [what, name] of hostile) {
      test(`${what} beside the listed files is refused (exit 4) and nothing changes`, () => {
        const root = newRoot();
        const bundle = bundleIn(root, 'names', { key: null });
        writeFileSync(root.at(`${bundle}/${name}`), '[ingest]\naddress = "attacker.example:443"\n');
        const baseline = root.listing(EXCLUDED);
        const result = install(root, bundle);
        assert.equal(result.code, 4, result.stdout + result.stderr);
        assert.match(result.stderr, /a bundle file name has characters outside \[A-Za-z0-9._-\]: /);
        assert.deepEqual(diffListings(baseline, root.listing(EXCLUDED)), []);
      });
    }
  });

  describe('one install at a time', () => {
    /** Starts install.sh in the root without waiting for it. */
    const start = (root: TestRoot, bundle: string): Promise<RunResult> =>
      new Promise((resolve) => {
        const child = spawn('chroot', [root.path, `${bundle}/install.sh`, '--no-start'], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    /** Every file install.sh writes for the agent, with the version record: one bundle's set, never a mix. */
    const installedSet = (root: TestRoot): string => `${readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8')}|${readFileSync(root.at('usr/local/libexec/ct-ops/agent.version'), 'utf8').trim()}`;
    const leftovers = (root: TestRoot): string[] =>
      ['usr/local/bin', 'usr/local/libexec/ct-ops', 'etc/ct-ops', 'etc/systemd/system'].flatMap((dir) => readdirSync(root.at(dir)).filter((name) => name.startsWith('.')).map((name) => `${dir}/${name}`));

    test('two installs started together: the second waits for the first, both succeed, the result is one consistent install', async () => {
      const root = newRoot();
      const first = bundleIn(root, 'first', { key: null, label: 'first', version: '1.0.0' });
      const second = bundleIn(root, 'second', { key: null, label: 'second', version: '2.0.0' });
      // Hold the lock as another install would, so the two really overlap, then let go.
      const holder = spawn('chroot', [root.path, 'flock', '/run/ct-ops-install.lock', 'sleep', '3'], { stdio: 'ignore' });
      const released = new Promise((resolve) => holder.on('close', resolve));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const results = await Promise.all([start(root, first), start(root, second)]);
      await released;
      for (const result of results) {
        assert.equal(result.code, 0, result.stdout + result.stderr);
        assert.match(result.stdout, /another ct-ops install or uninstall is running: waiting for it/);
      }
      assert.ok(['first|1.0.0', 'second|2.0.0'].includes(installedSet(root).replace(/#!\/bin\/sh\necho "stand-in (\w+)"\n/, '$1')), installedSet(root));
      assert.deepEqual(leftovers(root), [], 'no temporary file left behind');
      assert.equal(readFileSync(root.at('etc/passwd'), 'utf8').split('\n').filter((line) => line.startsWith('ct-ops:')).length, 1);
    });

    test('without flock, a lock folder left by a process that is gone is taken over, and a live one is waited for', async () => {
      const root = newRoot();
      rmSync(root.at('usr/bin/flock'));
      const bundle = bundleIn(root, 'noflock', { key: null });
      mkdirSync(root.at('run/ct-ops-install.lock.d'), { recursive: true });
      const gone = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
      writeFileSync(root.at('run/ct-ops-install.lock.d/pid'), `${gone}\n`);
      const stale = install(root, bundle);
      assert.equal(stale.code, 0, stale.stdout + stale.stderr);
      assert.match(stale.stdout, new RegExp(`removing the lock of process ${gone}, which is gone`));
      assert.ok(!existsSync(root.at('run/ct-ops-install.lock.d')), 'released on exit');

      // A live holder (this test's own process id): the install waits until the folder goes away.
      mkdirSync(root.at('run/ct-ops-install.lock.d'));
      writeFileSync(root.at('run/ct-ops-install.lock.d/pid'), `${process.pid}\n`);
      const waiting = start(root, bundle);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      rmSync(root.at('run/ct-ops-install.lock.d'), { recursive: true });
      const result = await waiting;
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /waiting for it/);
    });
  });
});
