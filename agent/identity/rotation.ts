import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import nacl from 'tweetnacl';
import { privateKeyToPem, publicKeyToPem, seedFromPem } from '../../common/ed25519-pem.ts';
import { CtOpsError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import type { AgentKeys } from './keys.ts';
import type { IdentityPaths } from './paths.ts';

/** A key rotation the appliance asked for (HeartbeatResponse.rotate_key) and has not yet confirmed. */
export interface PendingRotation {
  /** The new key pair, registered in place of the current one. */
  readonly keys: AgentKeys;
  /** The appliance's nonce, signed by the current key into the rotation proof. */
  readonly nonce: Uint8Array;
}

/** The shape of key_rotation.json (mode 0600): the new key as PKCS#8 PEM, the nonce in base64. */
interface RotationFile {
  private_key: string;
  rotation_nonce: string;
}

/**
 * Makes the new key pair and saves it with the nonce BEFORE it is sent (key_rotation.json): if
 * the agent stops after the appliance switched to the new key, its next start completes the
 * rotation instead of presenting the retired key. The current key stays in place until then.
 * Throws ERR_DATA_DIR_UNUSABLE when the file cannot be written.
 */
export function startKeyRotation(paths: IdentityPaths, nonce: Uint8Array): PendingRotation {
  const pair = nacl.sign.keyPair.fromSeed(new Uint8Array(randomBytes(32)));
  const file: RotationFile = { private_key: privateKeyToPem(pair.secretKey.subarray(0, 32)), rotation_nonce: Buffer.from(nonce).toString('base64') };
  try {
    writeFileAtomic(paths.rotation, JSON.stringify(file), 0o600);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot save the new key in ${paths.rotation}: ${(cause as Error).message}`, { path: paths.rotation }, { cause });
  }
  return { keys: { publicKey: pair.publicKey, secretKey: pair.secretKey }, nonce };
}

/** The rotation saved by startKeyRotation and not yet completed, if any (an unreadable file counts as none). */
export function readKeyRotation(paths: IdentityPaths): PendingRotation | undefined {
  if (!existsSync(paths.rotation)) return undefined;
  try {
    const file = JSON.parse(readFileSync(paths.rotation, 'utf8')) as Partial<RotationFile>;
    const seed = typeof file.private_key === 'string' ? seedFromPem(file.private_key) : undefined;
    if (seed === undefined || typeof file.rotation_nonce !== 'string') return undefined;
    const pair = nacl.sign.keyPair.fromSeed(seed);
    return { keys: { publicKey: pair.publicKey, secretKey: pair.secretKey }, nonce: new Uint8Array(Buffer.from(file.rotation_nonce, 'base64')) };
  } catch {
    return undefined;
  }
}

/**
 * The appliance registered the new key: it becomes the identity (agent_key.pem replaced by an
 * atomic rename, then agent_key.pub), and the saved rotation, with the old key's last trace, goes.
 * Throws ERR_DATA_DIR_UNUSABLE; the saved rotation then stays and the next start completes it.
 */
export function completeKeyRotation(paths: IdentityPaths, rotation: PendingRotation): void {
  try {
    writeFileAtomic(paths.privateKey, privateKeyToPem(rotation.keys.secretKey.subarray(0, 32)), 0o600);
    writeFileAtomic(paths.publicKey, publicKeyToPem(rotation.keys.publicKey), 0o644);
    rmSync(paths.rotation, { force: true });
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot make the new key the identity in ${paths.dataDir}: ${(cause as Error).message}`, { path: paths.dataDir }, { cause });
  }
}

/** The appliance refused the rotation (ERR_KEY_ROTATION_REFUSED): the current key stays; it offers a new rotation. */
export function abandonKeyRotation(paths: IdentityPaths): void {
  rmSync(paths.rotation, { force: true });
}
