/**
 * Signatures in minisign's file formats, so the standard `minisign -V` verifies what
 * CT-Ops signs on any transfer station. Ed25519 via tweetnacl; files are signed
 * "prehashed" (algorithm "ED": the signature covers BLAKE2b-512 of the file), which
 * is minisign's default since 0.10 and lets large executables be hashed as a stream.
 *
 * Formats (https://jedisct1.github.io/minisign/):
 *   public key: "untrusted comment: …\n" base64("Ed" ‖ key_id[8] ‖ public_key[32])
 *   signature:  "untrusted comment: …\n" base64("ED" ‖ key_id[8] ‖ sig[64])
 *               "trusted comment: <text>\n" base64(ed25519(sig ‖ <text>))
 * Private keys are kept as PKCS#8 PEM (common/ed25519-pem.ts), not minisign's secret
 * key format: only the appliance and the build read them. The key id is derived from
 * the public key, so the PEM alone identifies the key.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import nacl from 'tweetnacl';
import { CtOpsError } from './errors.ts';

const KEY_ALGORITHM = Buffer.from('Ed');
const PREHASHED_ALGORITHM = Buffer.from('ED');
const LEGACY_ALGORITHM = Buffer.from('Ed');

export interface SigningKey {
  /** 64-byte tweetnacl secret key (seed ‖ public key). */
  secretKey: Uint8Array;
  publicKey: Uint8Array;
  keyId: Uint8Array;
}

export interface PublicKey {
  publicKey: Uint8Array;
  keyId: Uint8Array;
}

/** The 8-byte key id: the first bytes of BLAKE2b-512 of the public key. */
export function keyIdOf(publicKey: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('blake2b512').update(publicKey).digest().subarray(0, 8));
}

export function signingKeyFromSeed(seed: Uint8Array): SigningKey {
  const pair = nacl.sign.keyPair.fromSeed(seed);
  return { secretKey: pair.secretKey, publicKey: pair.publicKey, keyId: keyIdOf(pair.publicKey) };
}

/** The key id as minisign prints it: the little-endian 64-bit number in upper-case hex. */
export function keyIdHex(keyId: Uint8Array): string {
  return Buffer.from(keyId).reverse().toString('hex').toUpperCase();
}

export function publicKeyFile(key: PublicKey, comment = `minisign public key ${keyIdHex(key.keyId)}`): string {
  return `untrusted comment: ${comment}\n${Buffer.concat([KEY_ALGORITHM, key.keyId, key.publicKey]).toString('base64')}\n`;
}

export function parsePublicKeyFile(text: string): PublicKey {
  const line = text.split(/\r?\n/).find((candidate) => candidate !== '' && !candidate.startsWith('untrusted comment:'));
  const raw = line ? Buffer.from(line.trim(), 'base64') : Buffer.alloc(0);
  if (raw.length !== 42 || !raw.subarray(0, 2).equals(KEY_ALGORITHM)) {
    throw new CtOpsError('ERR_SIGNATURE_INVALID', 'not a minisign Ed25519 public key');
  }
  return { keyId: new Uint8Array(raw.subarray(2, 10)), publicKey: new Uint8Array(raw.subarray(10)) };
}

export function blake2b512(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash('blake2b512').update(data).digest());
}

export async function blake2b512File(path: string): Promise<Uint8Array> {
  const hash = createHash('blake2b512');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return new Uint8Array(hash.digest());
}

/** A .minisig for content whose BLAKE2b-512 is `digest`. The trusted comment is signed too. */
export function signDigest(digest: Uint8Array, key: SigningKey, trustedComment: string, untrustedComment = 'signature from CT-Ops'): string {
  if (/[\r\n]/.test(trustedComment) || /[\r\n]/.test(untrustedComment)) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', 'signature comments must be single lines');
  }
  const signature = nacl.sign.detached(digest, key.secretKey);
  const globalSignature = nacl.sign.detached(Buffer.concat([signature, Buffer.from(trustedComment, 'utf8')]), key.secretKey);
  return [
    `untrusted comment: ${untrustedComment}`,
    Buffer.concat([PREHASHED_ALGORITHM, key.keyId, signature]).toString('base64'),
    `trusted comment: ${trustedComment}`,
    Buffer.from(globalSignature).toString('base64'),
    '',
  ].join('\n');
}

/**
 * Verifies a .minisig against content (given as its bytes or its BLAKE2b-512) and a
 * public key; returns the trusted comment. Throws ERR_SIGNATURE_INVALID naming why.
 */
export function verifySignature(signatureFile: string, content: { data: Uint8Array } | { digest: Uint8Array }, key: PublicKey): string {
  const lines = signatureFile.split(/\r?\n/);
  const fail = (why: string): never => {
    throw new CtOpsError('ERR_SIGNATURE_INVALID', `signature check failed: ${why}`);
  };
  if (lines.length < 4 || !lines[0]!.startsWith('untrusted comment:') || !lines[2]!.startsWith('trusted comment: ')) fail('not a minisign signature file');
  const raw = Buffer.from(lines[1]!.trim(), 'base64');
  if (raw.length !== 74) fail('malformed signature line');
  const algorithm = raw.subarray(0, 2);
  if (!Buffer.from(raw.subarray(2, 10)).equals(Buffer.from(key.keyId))) fail(`signed by key ${keyIdHex(raw.subarray(2, 10))}, expected ${keyIdHex(key.keyId)}`);
  const signature = raw.subarray(10);
  let message: Uint8Array;
  if (algorithm.equals(PREHASHED_ALGORITHM)) message = 'digest' in content ? content.digest : blake2b512(content.data);
  else if (algorithm.equals(LEGACY_ALGORITHM) && 'data' in content) message = content.data;
  else return fail('unsupported signature algorithm');
  if (!nacl.sign.detached.verify(message, signature, key.publicKey)) fail('the content does not match the signature');
  const trustedComment = lines[2]!.slice('trusted comment: '.length);
  const globalSignature = Buffer.from(lines[3]!.trim(), 'base64');
  if (globalSignature.length !== 64 || !nacl.sign.detached.verify(Buffer.concat([signature, Buffer.from(trustedComment, 'utf8')]), globalSignature, key.publicKey)) {
    fail('the trusted comment was altered');
  }
  return trustedComment;
}
