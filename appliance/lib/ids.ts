import { createHash, randomBytes } from 'node:crypto';

/** A random identifier with a prefix naming what it identifies (hst_, etk_, org_, ...). */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(10).toString('hex')}`;
}

/** A high-entropy secret (256 bits) rendered base64url after a prefix. */
export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/**
 * The stored form of a high-entropy secret. SHA-256 suffices here: the secrets are
 * 256-bit random, so there is nothing for a slow hash to protect against.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}
