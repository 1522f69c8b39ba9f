import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { successorProofPayload } from '../../common/successor-proof.ts';
import { IDENTITY_RESOLUTION_MAX_MS } from '../hosts/identity.ts';
import { newTimeOrderedId } from '../lib/ids.ts';
import { verifyAgentSignature } from './agent-signature.ts';
import type { Host } from '../model/host.ts';
import type { HostStore } from '../store/hosts.ts';
import type { TableStores, TransactionScope } from '../store/index.ts';
import { describedHost, type RegisterInput } from './register-input.ts';

/** A Register carrying a retired key's proof (RegisterRequest.predecessor_*). */
export interface SuccessorClaim {
  publicKey: Buffer;
  signature: Buffer;
}

/**
 * The predecessor host whose retired claimant may enrol the request's new key, read-only: the proof
 * verifies with the predecessor key, and that host was resolved by an admin with a re-enrolment
 * left: it is the host's key while the resolution lasts, or the key its kept machine rotated away
 * (the allowance then lasts the rest of IDENTITY_RESOLUTION_MAX_MS from the resolution).
 * Read through `hosts` (the registration's transaction). Throws ERR_SUCCESSOR_REFUSED otherwise,
 * before anything is written.
 */
export async function successorPredecessor(input: RegisterInput, claim: SuccessorClaim, hosts: HostStore, orgId: string, now: number): Promise<Host> {
  if (!verifyAgentSignature(claim.publicKey, successorProofPayload(input.publicKey), claim.signature)) {
    throw new CtOpsError('ERR_SUCCESSOR_REFUSED', 'the predecessor signature does not match the retired key and this public key');
  }
  const current = await hosts.findByPublicKey(claim.publicKey);
  const rotatedAway = current ? undefined : await hosts.findByPreviousKey(claim.publicKey);
  const predecessor = current ?? rotatedAway;
  const open = current ? current.identityState === 'resolved' : rotatedAway !== undefined && rotatedAway.identityResolvedAt !== null && now - rotatedAway.identityResolvedAt < IDENTITY_RESOLUTION_MAX_MS;
  if (!predecessor || predecessor.orgId !== orgId || predecessor.deletedAt !== null || !open || predecessor.identitySuccessorsAllowed < 1) {
    throw new CtOpsError('ERR_SUCCESSOR_REFUSED', 'the retired key belongs to no host an admin resolved with a re-enrolment left', { host_id: predecessor?.id ?? null });
  }
  return predecessor;
}

/**
 * Enrols the new key of a retired claimant as a new PENDING host, once per retired machine: it
 * carries the predecessor's tags (from its enrolment token and configuration) and token, never its
 * approval; an admin approves it like any new host. The allowance is spent in the same transaction
 * (a conditional UPDATE), so two racing requests cannot both enrol. Events on both hosts. Runs in
 * the caller's transaction `tx`; logged after commit. Throws ERR_SUCCESSOR_REFUSED when the
 * allowance is spent, or when the new key was enrolled meanwhile.
 */
export async function enrolSuccessor(input: RegisterInput, predecessor: Host, tx: TransactionScope<TableStores>, log: Logger, now: number): Promise<Host> {
  if (!(await tx.hosts.takeSuccessorAllowance(predecessor.id))) {
    throw new CtOpsError('ERR_SUCCESSOR_REFUSED', 'the retired key has no re-enrolment left', { host_id: predecessor.id });
  }
  const twin = await tx.hosts.findLiveByFingerprint(predecessor.orgId, input.machineFingerprint);
  const host = {
    id: newTimeOrderedId('hst', now),
    orgId: predecessor.orgId,
    ...describedHost(input),
    approval: 'pending' as const,
    enrolmentTokenId: predecessor.enrolmentTokenId,
    tags: { ...input.tags, ...predecessor.tags },
    fingerprintConflictWith: twin?.id ?? null,
    enrolledAt: now,
  };
  const stored = await tx.hosts.insert(host);
  if (stored === undefined) {
    throw new CtOpsError('ERR_SUCCESSOR_REFUSED', 'this public key was enrolled meanwhile', { host_id: predecessor.id });
  }
  await tx.hostEvents.record(host.id, now, 'successor-enrolled', { predecessor: predecessor.id });
  await tx.hostEvents.record(predecessor.id, now, 'successor-enrolled', { successor: host.id, hostname: input.hostname });
  tx.afterCommit(() => log.info({ host_id: host.id, predecessor: predecessor.id, fingerprint_conflict_with: host.fingerprintConflictWith }, 'retired claimant enrolled as a new pending host'));
  return stored;
}
