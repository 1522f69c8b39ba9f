import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import nacl from 'tweetnacl';
import { seedFromPem } from '../../common/ed25519-pem.ts';
import { CtOpsError } from '../../common/errors.ts';
import type { AgentKeys } from './keys.ts';
import type { IdentityPaths } from './paths.ts';

/**
 * The appliance retired this identity (ERR_IDENTITY_RETIRED: an admin kept another machine that
 * shares it). The private key is moved aside to retired_agent_key.pem, not deleted: it signs the
 * proof that lets the new key enrol as a new pending host, also after a restart in between; the
 * public key and the credential are removed, so the next identity load creates a new key pair.
 * Throws ERR_DATA_DIR_UNUSABLE when the files cannot be moved.
 */
export function retireIdentity(paths: IdentityPaths): void {
  try {
    renameSync(paths.privateKey, paths.retiredKey);
    rmSync(paths.publicKey, { force: true });
    rmSync(paths.state, { force: true });
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot retire the identity in ${paths.dataDir}: ${(cause as Error).message}`, { path: paths.dataDir }, { cause });
  }
}

/** The retired key awaiting its successor's enrolment, if any (an unreadable file counts as none). */
export function readRetiredKeys(paths: IdentityPaths): AgentKeys | undefined {
  if (!existsSync(paths.retiredKey)) return undefined;
  const seed = seedFromPem(readFileSync(paths.retiredKey, 'utf8'));
  if (seed === undefined) return undefined;
  const pair = nacl.sign.keyPair.fromSeed(seed);
  return { publicKey: pair.publicKey, secretKey: pair.secretKey };
}

/** The new key is known to the appliance: the retired one has done its work. */
export function forgetRetiredKeys(paths: IdentityPaths): void {
  rmSync(paths.retiredKey, { force: true });
}
