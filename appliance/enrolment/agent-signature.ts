import { createPublicKey, verify } from 'node:crypto';

/**
 * The encodings of the Ed25519 points of small order (libsodium's blocklist,
 * ge25519_has_small_order): 0 and 1, the two points of order 8, p − 1, and the non-canonical
 * p and p + 1. Compared without the sign bit (the top bit of the last byte).
 * A signature "by" such a key verifies for many messages without any private key (an all-zero key
 * and an all-zero signature pass node's crypto.verify), so such a key proves nothing.
 */
const SMALL_ORDER_KEYS = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].map((hex) => Buffer.from(hex, 'hex'));

/** Whether a 32-byte Ed25519 public key is one of the small-order points (SMALL_ORDER_KEYS). */
export function isSmallOrderKey(publicKey: Buffer): boolean {
  const unsigned = Buffer.from(publicKey);
  unsigned[31] = (unsigned[31] ?? 0) & 0x7f;
  return SMALL_ORDER_KEYS.some((blocked) => blocked.equals(unsigned));
}

/**
 * Whether `signature` (64 bytes) is an Ed25519 signature of `payload` by the agent key `publicKey`
 * (32 raw bytes); always false for a small-order key. The one check of an agent's signature
 * (Register's proof of possession, a retired key's successor proof).
 */
export function verifyAgentSignature(publicKey: Buffer, payload: Uint8Array, signature: Uint8Array): boolean {
  if (isSmallOrderKey(publicKey)) return false;
  // Importing the raw key as a JWK is an order of magnitude cheaper than parsing PEM (measured by bench:core).
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') }, format: 'jwk' });
  return verify(null, payload, key, signature);
}
