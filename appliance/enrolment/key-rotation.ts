import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { HeartbeatResponse } from '../../common/proto.ts';
import { keyRotationProofPayload } from '../../common/successor-proof.ts';
import type { Host } from '../model/host.ts';
import type { HostStore } from '../store/hosts.ts';
import type { Stores, TableStores, TransactionScope } from '../store/index.ts';
import { verifyAgentSignature } from './agent-signature.ts';
import type { RegisterInput } from './register-input.ts';

/** Random bytes in a rotation nonce (KeyRotation.rotation_nonce). */
export const ROTATION_NONCE_BYTES = 32;

/** A Register rotating the host's key (RegisterRequest.rotation_nonce with predecessor_*). */
export interface RotationClaim {
  /** The host's current key and its signature over keyRotationProofPayload(new key, nonce). */
  publicKey: Buffer;
  signature: Buffer;
  nonce: Buffer;
}

/** A fresh nonce's SHA-256, stored when nothing will be sent yet (the nonce itself is discarded): marks a rotation pending. */
export function pendingRotationMark(): Buffer {
  return sha256(randomBytes(ROTATION_NONCE_BYTES));
}

/**
 * Offers the pending key rotation of a host (resolved in favour of the machine behind `send`) on
 * that machine's accepted stream: a fresh nonce replaces the stored hash, so only the last offer
 * can complete, and the nonce itself is never stored. Nothing when no rotation is pending.
 * `send` writes to the kept machine's stream and says whether the stream accepted it; an offer not
 * sent is repeated on the machine's next accepted stream.
 */
export async function offerKeyRotation(deps: { stores: Stores; log: Logger }, host: Host, send: (message: HeartbeatResponse) => Promise<boolean>): Promise<void> {
  // Never while flagged again: the stream held then may be any of the machines.
  if (host.identityRotationNonceSha256 === null || host.identityState === 'conflict') return;
  const nonce = randomBytes(ROTATION_NONCE_BYTES);
  if (!(await deps.stores.hosts.offerKeyRotation(host.id, sha256(nonce)))) return;
  if (await send({ rotate_key: { rotation_nonce: nonce } })) deps.log.info({ host_id: host.id }, 'key rotation offered to the kept machine');
}

/**
 * The host whose key the request rotates, read-only: the proof verifies with the claimed old key
 * over the new key and the nonce, the old key is the host's current key, and the nonce is the one
 * last offered, read through `hosts` (the registration's transaction). Throws ERR_KEY_ROTATION_REFUSED
 * otherwise, before anything is written.
 */
export async function rotatingHost(input: RegisterInput, claim: RotationClaim, hosts: HostStore, orgId: string): Promise<Host> {
  if (!verifyAgentSignature(claim.publicKey, keyRotationProofPayload(input.publicKey, claim.nonce), claim.signature)) {
    throw new CtOpsError('ERR_KEY_ROTATION_REFUSED', 'the rotation signature does not match the current key, this public key and the nonce');
  }
  const host = await hosts.findByPublicKey(claim.publicKey);
  const offered = host?.identityRotationNonceSha256;
  if (!host || host.orgId !== orgId || host.deletedAt !== null || !offered || !timingSafeEqual(offered, sha256(claim.nonce))) {
    throw new CtOpsError('ERR_KEY_ROTATION_REFUSED', 'no key rotation with this nonce is pending for this key', { host_id: host?.id ?? null });
  }
  return host;
}

/**
 * Moves the host's record (id, approval, tags, history, name) to the request's new key, atomically
 * (a conditional UPDATE: two racing rotations cannot both succeed), ends the resolution, and
 * records an 'identity-key-rotated' event. From then on the old key is retired (register.ts) and
 * JWTs issued before now are refused (hosts/identity.ts credentialRefusal). Runs in the caller's
 * transaction `tx`; logged after commit.
 */
export async function rotateHostKey(input: RegisterInput, host: Host, claim: RotationClaim, tx: TransactionScope<TableStores>, log: Logger, now: number): Promise<Host> {
  if (!(await tx.hosts.rotateKey(host.id, claim.publicKey, input.publicKey, sha256(claim.nonce), now))) {
    throw new CtOpsError('ERR_KEY_ROTATION_REFUSED', 'the key rotation was already completed or replaced', { host_id: host.id });
  }
  await tx.hostEvents.record(host.id, now, 'identity-key-rotated', { hostname: input.hostname });
  tx.afterCommit(() => log.warn({ host_id: host.id }, 'host key rotated: the key the cloned machines shared is retired'));
  return (await tx.hosts.get(host.id)) as Host;
}

function sha256(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
