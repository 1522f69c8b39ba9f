/**
 * Standard PEM encodings of raw Ed25519 keys (RFC 8410): PKCS#8 for the private key,
 * SubjectPublicKeyInfo for the public key, so OpenSSL and every other tool read them.
 * The DER of both is fixed apart from the key bytes, hence the constant prefixes.
 */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const KEY_BYTES = 32;

function toPem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function fromPem(label: string, pem: string, prefix: Buffer): Uint8Array | undefined {
  const match = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  if (!match?.[1]) return undefined;
  const der = Buffer.from(match[1].replace(/\s+/g, ''), 'base64');
  if (der.length !== prefix.length + KEY_BYTES || !der.subarray(0, prefix.length).equals(prefix)) return undefined;
  return new Uint8Array(der.subarray(prefix.length));
}

/** PKCS#8 PEM of a 32-byte Ed25519 seed. */
export function privateKeyToPem(seed: Uint8Array): string {
  return toPem('PRIVATE KEY', Buffer.concat([PKCS8_PREFIX, Buffer.from(seed)]));
}

/** SPKI PEM of a 32-byte Ed25519 public key. */
export function publicKeyToPem(publicKey: Uint8Array): string {
  return toPem('PUBLIC KEY', Buffer.concat([SPKI_PREFIX, Buffer.from(publicKey)]));
}

/** The 32-byte seed inside a PKCS#8 Ed25519 PEM, or undefined when it is not one. */
export function seedFromPem(pem: string): Uint8Array | undefined {
  return fromPem('PRIVATE KEY', pem, PKCS8_PREFIX);
}

/** The 32-byte key inside an SPKI Ed25519 PEM, or undefined when it is not one. */
export function publicKeyFromPem(pem: string): Uint8Array | undefined {
  return fromPem('PUBLIC KEY', pem, SPKI_PREFIX);
}
