import { createHash, randomBytes } from 'node:crypto';

/** Id formats and their generator are shared with the agent: common/ids.ts. */
export { newId, newTimeOrderedId } from '../../common/ids.ts';

/** A high-entropy secret (256 bits) rendered base64url after a prefix naming what it is (tok_ enrolment, ctadm_ local CLI, ctses_ API session, ctcon_ console session, ctapi_ API token). */
export function newSecret(prefix: 'tok' | 'ctadm' | 'ctses' | 'ctcon' | 'ctapi'): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/**
 * The stored form of a high-entropy secret. SHA-256 suffices here: the secrets are
 * 256-bit random, so there is nothing for a slow hash to protect against.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}
