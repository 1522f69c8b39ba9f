/**
 * The agent's checks on an update offer and on what it downloaded (agent/update/verify.ts), with
 * real minisign signatures (a release written as build:agents writes one, verified by the same code
 * minisign's format defines): every kind of bad offer is refused with its own code.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { formatSha256Sums, sha256Hex } from '../bundler/lib/sha256sums.ts';
import { blake2b512, signDigest, signingKeyFromSeed } from '../common/minisign.ts';
import type { UpdateOffer__Output } from '../common/proto.ts';
import { MAX_RELEASE_FILE_BYTES } from '../common/release-version.ts';
import { checkDownloaded, checkOffer } from '../agent/update/verify.ts';
import { writeReleaseDir } from './helpers/bundler-fixtures.ts';

const releaseKey = signingKeyFromSeed(randomBytes(32));
const otherKey = signingKeyFromSeed(randomBytes(32));
const work = mkdtempSync(join(tmpdir(), 'ct-ops-update-verify-'));
const running = { version: '1.4.2', executableName: 'ct-ops-agent-linux-x64' };

/** A signed release of `version` and the offer the appliance makes of its linux-x64 executable. */
function release(version: string, key = releaseKey): { dir: string; offer: UpdateOffer__Output } {
  const dir = writeReleaseDir(mkdtempSync(join(work, 'r-')), key, { version, bytes: 4096 });
  const data = readFileSync(join(dir, running.executableName));
  return { dir, offer: { version, file_name: running.executableName, size: data.length, sha256: sha256Hex(data), download_path: `/agent/v1/releases/${version}/`, https_port: 8443 } };
}

function downloaded(dir: string): { executable: string; sums: Buffer; signature: Buffer } {
  return { executable: join(dir, running.executableName), sums: readFileSync(join(dir, 'SHA256SUMS')), signature: readFileSync(join(dir, 'SHA256SUMS.minisig')) };
}

async function refusedWith(work: () => unknown, code: string): Promise<void> {
  await assert.rejects(async () => work(), (error: Error & { code?: string }) => {
    assert.equal(error.code, code, error.message);
    return true;
  });
}

describe('agent self-update verification', () => {
  after(() => rmSync(work, { recursive: true, force: true }));

  it('takes a newer release of its own target, signed by the pinned key', async () => {
    const { dir, offer } = release('1.5.0');
    checkOffer(offer, running, releaseKey);
    await checkDownloaded(downloaded(dir), offer, releaseKey);
    // Numeric, not text order: 1.10.0 is newer than 1.4.2.
    checkOffer(release('1.10.0').offer, running, releaseKey);
  });

  it('refuses before downloading: a downgrade or the same version, another target, an oversized file, a malformed offer, no pinned key', async () => {
    const { offer } = release('1.5.0');
    await refusedWith(() => checkOffer({ ...offer, version: '1.4.1' }, running, releaseKey), 'ERR_UPDATE_NOT_NEWER');
    await refusedWith(() => checkOffer({ ...offer, version: '1.4.2' }, running, releaseKey), 'ERR_UPDATE_NOT_NEWER');
    await refusedWith(() => checkOffer(offer, { ...running, version: '1.4.2-dev' }, releaseKey), 'ERR_UPDATE_NOT_NEWER');
    await refusedWith(() => checkOffer({ ...offer, file_name: 'ct-ops-agent-linux-arm64' }, running, releaseKey), 'ERR_UPDATE_WRONG_TARGET');
    await refusedWith(() => checkOffer({ ...offer, file_name: 'ct-ops-agent-windows-x64.exe' }, running, releaseKey), 'ERR_UPDATE_WRONG_TARGET');
    await refusedWith(() => checkOffer({ ...offer, size: MAX_RELEASE_FILE_BYTES + 1 }, running, releaseKey), 'ERR_UPDATE_TOO_LARGE');
    await refusedWith(() => checkOffer({ ...offer, size: 0 }, running, releaseKey), 'ERR_UPDATE_TOO_LARGE');
    await refusedWith(() => checkOffer({ ...offer, version: '1.5' }, running, releaseKey), 'ERR_INVALID_ARGUMENT');
    await refusedWith(() => checkOffer({ ...offer, sha256: 'ZZ' }, running, releaseKey), 'ERR_INVALID_ARGUMENT');
    await refusedWith(() => checkOffer(offer, running, undefined), 'ERR_UPDATE_NO_RELEASE_KEY');
  });

  it('refuses what was downloaded: a flipped byte, another key, a wrong hash, SHA256SUMS changed, another signed version, a file the sums do not list', async () => {
    const flipped = release('1.5.0');
    const bytes = readFileSync(join(flipped.dir, running.executableName));
    bytes[100]! ^= 0x01;
    writeFileSync(join(flipped.dir, running.executableName), bytes);
    await refusedWith(() => checkDownloaded(downloaded(flipped.dir), flipped.offer, releaseKey), 'ERR_UPDATE_HASH_MISMATCH');

    const otherSigner = release('1.5.0', otherKey);
    await refusedWith(() => checkDownloaded(downloaded(otherSigner.dir), otherSigner.offer, releaseKey), 'ERR_UPDATE_SIGNATURE_INVALID');

    const good = release('1.5.0');
    await refusedWith(() => checkDownloaded(downloaded(good.dir), { ...good.offer, sha256: '0'.repeat(64) }, releaseKey), 'ERR_UPDATE_HASH_MISMATCH');

    const edited = downloaded(good.dir);
    await refusedWith(() => checkDownloaded({ ...edited, sums: Buffer.concat([edited.sums, Buffer.from(`${'1'.repeat(64)}  extra\n`)]) }, good.offer, releaseKey), 'ERR_UPDATE_SIGNATURE_INVALID');

    // A genuine signature of another version's release, offered as 1.5.0 (a replayed older release).
    const older = release('1.4.9');
    await refusedWith(() => checkDownloaded(downloaded(older.dir), { ...older.offer, version: '1.5.0' }, releaseKey), 'ERR_UPDATE_SIGNATURE_INVALID');

    // Signed sums that do not list the executable offered.
    const unlisted = release('1.5.0');
    const sums = formatSha256Sums([{ name: 'ct-ops-agent-darwin-arm64', sha256: '2'.repeat(64) }]);
    const signature = signDigest(blake2b512(sums), releaseKey, 'ct-ops-agent 1.5.0 executables, signed by test key', 'test');
    await refusedWith(
      () => checkDownloaded({ executable: join(unlisted.dir, running.executableName), sums: Buffer.from(sums), signature: Buffer.from(signature) }, unlisted.offer, releaseKey),
      'ERR_UPDATE_HASH_MISMATCH',
    );
  });
});
