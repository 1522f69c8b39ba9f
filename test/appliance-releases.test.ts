/**
 * `ct-ops-appliance releases import|list|show|retire` against a real appliance: a signed release
 * folder or tarball is checked against the trusted release key before anything of it is kept; the
 * kept copy verifies with the standard tools (sha256sum, minisign); every kind of bad release is
 * refused with its code and leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { blake2b512, keyIdHex, publicKeyFile, signDigest, signingKeyFromSeed } from '../common/minisign.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { tempDir, writeReleaseDir } from './helpers/bundler-fixtures.ts';
import { run } from './helpers/processes.ts';

const releaseKey = signingKeyFromSeed(randomBytes(32));
const otherKey = signingKeyFromSeed(randomBytes(32));

interface ReleaseView {
  version: string;
  state: string;
  key_id: string;
  files: Array<{ name: string; sha256: string; size: number }>;
}

describe('agent releases: import, list, show, retire', () => {
  let appliance: TestAppliance;
  let work: string;
  let releasePub: string;

  before(async () => {
    work = tempDir('ct-ops-releases-');
    releasePub = join(work, 'release.pub');
    writeFileSync(releasePub, publicKeyFile(releaseKey, 'CT-Ops test release key'));
    appliance = await TestAppliance.start({ args: ['--release-public-key-file', releasePub] });
  });
  after(async () => {
    await appliance?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  /** A signed release folder of `version` (small fake executables), in a folder of its own under work. */
  const release = (version: string, options: { bytes?: number; key?: typeof releaseKey } = {}): string =>
    writeReleaseDir(mkdtempSync(join(work, 'media-')), options.key ?? releaseKey, { version, bytes: options.bytes ?? 4096 });

  const importRelease = (path: string, ...flags: string[]) => appliance.cli('releases', 'import', path, ...flags, '--json');

  /** Asserts the CLI failed with `code`, and that the catalogue and the releases folder hold just `kept` (no staging left). */
  async function assertRefused(result: { code: number | null; stderr: string }, code: string, exitCode: number, kept: readonly string[]): Promise<void> {
    assert.match(result.stderr, new RegExp(code), result.stderr);
    assert.equal(result.code, exitCode, result.stderr);
    const listed = await appliance.cliJson<ReleaseView[]>('releases', 'list');
    assert.deepEqual(listed.map((view) => view.version).sort(), [...kept].sort());
    assert.deepEqual(readdirSync(join(appliance.dataDir, 'releases')).sort(), [...kept].sort(), 'a refused import leaves no folder, staging included');
  }

  it('imports a signed folder; the kept copy verifies with sha256sum and minisign; a second import of the same files changes nothing', async () => {
    const dir = release('1.2.0', { bytes: 1 << 20 });
    const first = await importRelease(dir);
    assert.equal(first.code, 0, first.stderr);
    const outcome = JSON.parse(first.stdout) as { imported: boolean; release: ReleaseView };
    assert.equal(outcome.imported, true);
    assert.equal(outcome.release.version, '1.2.0');
    assert.equal(outcome.release.state, 'active');
    assert.equal(outcome.release.key_id, keyIdHex(releaseKey.keyId));
    const sums = readFileSync(join(dir, 'SHA256SUMS'), 'utf8');
    assert.deepEqual(outcome.release.files.map((file) => `${file.sha256}  ${file.name}\n`).join(''), sums);

    const kept = join(appliance.dataDir, 'releases', '1.2.0');
    const checked = await run('sh', ['-c', 'cd "$1" && sha256sum -c --strict SHA256SUMS', 'sh', kept]);
    assert.equal(checked.code, 0, checked.stdout + checked.stderr);
    const verified = await run('minisign', ['-Vm', join(kept, 'SHA256SUMS'), '-p', releasePub]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /ct-ops-agent 1\.2\.0 executables/);
    assert.ok(!existsSync(join(kept, 'release.pub')), 'release.pub from the media is never kept');

    const again = await importRelease(dir);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as { imported: boolean }).imported, false);

    // A gzip'd tarball of the folder (one top folder) is the same release.
    const tarball = join(work, 'release-1.2.0.tar.gz');
    const packed = await run('tar', ['-czf', tarball, '-C', join(dir, '..'), '1.2.0']);
    assert.equal(packed.code, 0, packed.stderr);
    const fromTarball = await importRelease(tarball);
    assert.equal(fromTarball.code, 0, fromTarball.stderr);
    assert.equal((JSON.parse(fromTarball.stdout) as { imported: boolean }).imported, false);

    // A tarball of the folder's contents (`tar -C DIR .`: entries ./NAME) is the same release.
    const dotted = join(work, 'release-1.2.0-dotted.tar');
    assert.equal((await run('tar', ['-cf', dotted, '-C', dir, '.'])).code, 0);
    const fromDotted = await importRelease(dotted);
    assert.equal(fromDotted.code, 0, fromDotted.stderr);

    const shown = await appliance.cliJson<ReleaseView>('releases', 'show', '1.2.0');
    assert.deepEqual(shown.files, outcome.release.files);
  });

  it('refuses the same version with other bytes, and an older version unless --allow-older', async () => {
    const other = await importRelease(release('1.2.0', { bytes: 2048 }));
    await assertRefused(other, 'ERR_RELEASE_CONFLICT', 65, ['1.2.0']);
    const older = release('1.1.0');
    await assertRefused(await importRelease(older), 'ERR_RELEASE_OLDER', 65, ['1.2.0']);
    const allowed = await importRelease(older, '--allow-older');
    assert.equal(allowed.code, 0, allowed.stderr);
    const listed = await appliance.cliJson<ReleaseView[]>('releases', 'list');
    assert.deepEqual(listed.map((view) => view.version), ['1.2.0', '1.1.0'], 'newest first');
  });

  it('refuses every tampered or malformed release with its code and keeps nothing of it', async () => {
    const kept = ['1.1.0', '1.2.0'];
    const tampered = (version: string, change: (dir: string) => void): string => {
      const dir = release(version);
      change(dir);
      return dir;
    };
    // A flipped byte in an executable.
    const flipped = tampered('2.0.0', (dir) => {
      const path = join(dir, 'ct-ops-agent-linux-x64');
      const bytes = readFileSync(path);
      bytes[bytes.length - 1]! ^= 0x01;
      writeFileSync(path, bytes);
    });
    await assertRefused(await importRelease(flipped), 'ERR_RELEASE_UNTRUSTED', 77, kept);
    // Signed by a key the appliance does not trust.
    await assertRefused(await importRelease(release('2.0.0', { key: otherKey })), 'ERR_RELEASE_UNTRUSTED', 77, kept);
    // SHA256SUMS changed after signing.
    await assertRefused(await importRelease(tampered('2.0.0', (dir) => appendFileSync(join(dir, 'SHA256SUMS'), `${'0'.repeat(64)}  ct-ops-agent-linux-arm64\n`))), 'ERR_RELEASE_UNTRUSTED', 77, kept);
    // The signed (trusted) comment altered to claim another version.
    const relabelled = tampered('2.0.0', (dir) => {
      const path = join(dir, 'SHA256SUMS.minisig');
      writeFileSync(path, readFileSync(path, 'utf8').replace('ct-ops-agent 2.0.0 executables', 'ct-ops-agent 9.0.0 executables'));
    });
    await assertRefused(await importRelease(relabelled), 'ERR_RELEASE_UNTRUSTED', 77, kept);
    // A signature whose trusted comment names no version.
    const unversioned = tampered('2.0.0', (dir) => {
      const sums = readFileSync(join(dir, 'SHA256SUMS'));
      writeFileSync(join(dir, 'SHA256SUMS.minisig'), signDigest(blake2b512(sums), releaseKey, 'timestamp:0\tfile:SHA256SUMS'));
    });
    await assertRefused(await importRelease(unversioned), 'ERR_RELEASE_INVALID', 65, kept);
    // A file SHA256SUMS lists is missing.
    await assertRefused(await importRelease(tampered('2.0.0', (dir) => rmSync(join(dir, 'ct-ops-agent-darwin-arm64')))), 'ERR_RELEASE_INVALID', 65, kept);
    // A tarball with a link, and one with a path out of its folder (GNU tar keeps ".." with -P).
    const linked = tampered('2.0.0', (dir) => {
      rmSync(join(dir, 'ct-ops-agent-linux-x64'));
      symlinkSync('/etc/passwd', join(dir, 'ct-ops-agent-linux-x64'));
    });
    const linkTar = join(work, 'link.tar');
    assert.equal((await run('tar', ['-cf', linkTar, '-C', linked, '.'])).code, 0);
    await assertRefused(await importRelease(linkTar), 'ERR_RELEASE_INVALID', 65, kept);
    const escapeTar = join(work, 'escape.tar');
    assert.equal((await run('tar', ['-cPf', escapeTar, '-C', release('2.0.0'), '--transform', 's,^,../,', 'SHA256SUMS', 'SHA256SUMS.minisig'])).code, 0);
    await assertRefused(await importRelease(escapeTar), 'ERR_RELEASE_INVALID', 65, kept);
    // Not a tar at all.
    const garbage = join(work, 'garbage.tar');
    writeFileSync(garbage, randomBytes(10_000));
    await assertRefused(await importRelease(garbage), 'ERR_RELEASE_INVALID', 65, kept);
  });

  it('an upload cut off part-way is dropped with its staging, and the next import is not held up by it', async () => {
    const dir = release('3.0.0', { bytes: 2 << 20 });
    const tarball = join(work, 'cut.tar');
    assert.equal((await run('tar', ['-cf', tarball, '-C', dir, '.'])).code, 0);
    const endpoint = JSON.parse(readFileSync(join(appliance.dataDir, 'appliance.json'), 'utf8')) as { admin_api: string };
    const credential = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
    await new Promise<void>((resolve) => {
      const req = httpsRequest(new URL('/api/v1/releases', endpoint.admin_api), { method: 'POST', ca: appliance.caCert, checkServerIdentity: () => undefined, headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/x-tar' } });
      req.on('error', () => resolve());
      req.write(readFileSync(tarball).subarray(0, 1 << 20), () => setTimeout(() => req.destroy(), 200));
      req.on('close', () => resolve());
    });
    const next = await importRelease(dir);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(readdirSync(join(appliance.dataDir, 'releases')).filter((name) => name.startsWith('.incoming-')), [], 'no staging left');
  });

  it('retires a release (kept, no longer active); an unknown version is ERR_RELEASE_NOT_FOUND', async () => {
    const retired = await appliance.cliJson<ReleaseView & { retired_at: string }>('releases', 'retire', '1.1.0');
    assert.equal(retired.state, 'retired');
    assert.ok(Date.parse(retired.retired_at) > 0);
    const again = await appliance.cliJson<ReleaseView & { retired_at: string }>('releases', 'retire', '1.1.0');
    assert.equal(again.retired_at, retired.retired_at, 'retiring twice keeps the first time');
    const missing = await appliance.cli('releases', 'retire', '7.7.7');
    assert.match(missing.stderr, /ERR_RELEASE_NOT_FOUND/);
    assert.equal(missing.code, 66);
    const shown = await appliance.cli('releases', 'show', '7.7.7');
    assert.equal(shown.code, 66);
    assert.ok(existsSync(join(appliance.dataDir, 'releases', '1.1.0', 'SHA256SUMS')), "a retired release's files are kept");
  });
});
