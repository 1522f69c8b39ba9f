import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { blake2b512, blake2b512File, keyIdHex, parsePublicKeyFile, publicKeyFile, signDigest, signingKeyFromSeed, verifySignature } from '../common/minisign.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-minisign-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const key = signingKeyFromSeed(randomBytes(32));

test('the standard minisign tool verifies what CT-Ops signs, and rejects a changed byte or trusted comment', async () => {
  const file = join(dir, 'payload.bin');
  writeFileSync(file, randomBytes(200_000));
  writeFileSync(join(dir, 'key.pub'), publicKeyFile(key));
  const signature = signDigest(await blake2b512File(file), key, 'file:payload.bin built:2026-11-28');
  writeFileSync(`${file}.minisig`, signature);
  const output = execFileSync('minisign', ['-V', '-p', join(dir, 'key.pub'), '-m', file], { encoding: 'utf8' });
  assert.match(output, /Signature and comment signature verified/);
  assert.match(output, /Trusted comment: file:payload\.bin built:2026-11-28/);

  writeFileSync(`${file}.minisig`, signature.replace('file:payload.bin', 'file:other.bin'));
  assert.notEqual(spawnSync('minisign', ['-V', '-p', join(dir, 'key.pub'), '-m', file]).status, 0);
  writeFileSync(`${file}.minisig`, signature);
  writeFileSync(file, randomBytes(200_000));
  assert.notEqual(spawnSync('minisign', ['-V', '-p', join(dir, 'key.pub'), '-m', file]).status, 0);
});

test('CT-Ops verifies its own signatures and names why a bad one fails', () => {
  const data = Buffer.from('SHA256SUMS content\n');
  const signature = signDigest(blake2b512(data), key, 'trusted');
  const publicKey = parsePublicKeyFile(publicKeyFile(key));
  assert.equal(verifySignature(signature, { data }, publicKey), 'trusted');
  const isSignatureError = (pattern: RegExp) => (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_SIGNATURE_INVALID' && pattern.test(error.message);
  assert.throws(() => verifySignature(signature, { data: Buffer.from('SHA256SUMS content!\n') }, publicKey), isSignatureError(/does not match/));
  assert.throws(() => verifySignature(signature.replace('trusted comment: trusted', 'trusted comment: altered'), { data }, publicKey), isSignatureError(/trusted comment was altered/));
  const other = signingKeyFromSeed(randomBytes(32));
  assert.throws(() => verifySignature(signature, { data }, other), isSignatureError(new RegExp(`expected ${keyIdHex(other.keyId)}`)));
  assert.throws(() => parsePublicKeyFile('untrusted comment: x\nnot-a-key\n'), isSignatureError(/public key/));
});
