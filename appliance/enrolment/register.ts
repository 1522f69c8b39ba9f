import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { RegisterResponse } from '../../common/proto.ts';
import { registerPayload } from '../../common/register-payload.ts';
import type { AgentJwtAuthority } from '../auth/agent-jwt.ts';
import { hashSecret, newTimeOrderedId } from '../lib/ids.ts';
import type { EnrolmentToken } from '../model/enrolment.ts';
import type { Host } from '../model/host.ts';
import type { Stores, TableStores, TransactionScope } from '../store/index.ts';
import { verifyAgentSignature } from './agent-signature.ts';
import type { RegisterChallenges } from './register-challenge.ts';
import { legacyRegisterLog } from './legacy-register-log.ts';
import { describedHost, type RegisterInput } from './register-input.ts';
import { retiredError } from '../hosts/identity.ts';
import { rotateHostKey, rotatingHost } from './key-rotation.ts';
import { enrolSuccessor, successorPredecessor } from './successor.ts';
import { tokenState } from './tokens.ts';

/** How far a legacy (register/v1) Register's timestamp may be from the appliance's clock. */
export const REGISTER_CLOCK_SKEW_MS = 5 * 60_000;

export interface RegisterDeps {
  stores: Stores;
  jwt: AgentJwtAuthority;
  challenges: RegisterChallenges;
  orgId: string;
  pendingPollSecs: number;
  log: Logger;
}

/**
 * Register: proves possession of the key, then answers by key when it is known
 * (idempotent, no token needed, so an enrolled agent can never lock itself out)
 * and only otherwise spends one use of the enrolment token. The lookups and the writes (the
 * challenge or nonce, the token use, the host) are one transaction, so a refused request leaves no
 * row behind (not even its challenge or nonce) and racing requests are ordered by the database. Two
 * requests enrolling one new key at once: the one that commits second finds the key taken (the
 * insert's ON CONFLICT), rolls back, and is answered as the known host by a second attempt.
 */
export async function register(input: RegisterInput, deps: RegisterDeps, now: number): Promise<RegisterResponse> {
  // Freshness is checked before the signature: a forged or old challenge costs a MAC, not a verification.
  const used = 'challenge' in input ? challengeUse(input.challenge, deps, now) : legacyNonceUse(input, now);
  verifyPossession(input);
  if (!('challenge' in input)) legacyRegisterLog.noted(input.publicKey, input.agentVersion, deps.log);
  let host: Host;
  try {
    host = await registerInTransaction(input, used, deps, now);
  } catch (error) {
    if (!(error instanceof KeyEnrolledMeanwhile)) throw error;
    host = await registerInTransaction(input, used, deps, now);
  }
  return respond(host, deps, now);
}

/** The new key was enrolled by a concurrent request between this one's lookup and its insert: roll back, answer by key. */
class KeyEnrolledMeanwhile extends Error {}

/** The host the request registers as, decided and written in one transaction; throws the refusal (ERR_*) otherwise. */
function registerInTransaction(input: RegisterInput, used: SingleUse, deps: RegisterDeps, now: number): Promise<Host> {
  return deps.stores.transact(async (tx) => {
    // The key is looked up before the token: a known key needs none, even an expired one.
    const known = await tx.hosts.findByPublicKey(input.publicKey);
    if (known && known.deletedAt !== null) {
      throw new CtOpsError('ERR_AGENT_KEY_RETIRED', 'this key belongs to a deleted host and is retired; enrol again with a new key', { host_id: known.id });
    }
    if (known) {
      await rememberUse(tx, input.publicKey, used, now);
      return refreshKnownHost(tx, known, input, deps.log, now);
    }
    const rotatedAway = await tx.hosts.findByPreviousKey(input.publicKey);
    if (rotatedAway) throw retiredError(rotatedAway);
    if (input.predecessor && input.rotationNonce) {
      // The kept machine of a resolved identity moves the host to a new key; the shared key is retired.
      const claim = { ...input.predecessor, nonce: input.rotationNonce };
      const host = await rotatingHost(input, claim, tx.hosts, deps.orgId);
      await rememberUse(tx, input.publicKey, used, now);
      return rotateHostKey(input, host, claim, tx, deps.log, now);
    }
    if (input.predecessor) {
      // A retired claimant of a resolved identity enrols its new key with the old key's proof, not a token.
      const predecessor = await successorPredecessor(input, input.predecessor, tx.hosts, deps.orgId, now);
      await rememberUse(tx, input.publicKey, used, now);
      return enrolSuccessor(input, predecessor, tx, deps.log, now);
    }
    const token = await usableToken(tx, input.orgToken, deps.orgId, now);
    await rememberUse(tx, input.publicKey, used, now);
    return enrolNewHost(tx, input, token, deps, now);
  });
}

/** What makes a Register single-use: a value its key may use once, remembered until a request carrying it could no longer be accepted (ms since the epoch). */
interface SingleUse {
  value: Buffer;
  rememberUntil: number;
  /** The refusal when the value expires before one already pruned (the appliance's clock was set back). */
  forgotten: () => CtOpsError;
}

/** The challenge form: fresh by the appliance's clock alone (register-challenge.ts), single use per key. */
function challengeUse(challenge: Buffer, deps: RegisterDeps, now: number): SingleUse {
  const forgotten = () =>
    new CtOpsError('ERR_REGISTER_CHALLENGE_EXPIRED', "the Register challenge expires before one already forgotten (the appliance's clock was set back); ask for a new one later");
  return { value: challenge, rememberUntil: deps.challenges.check(challenge, now).expiresAt, forgotten };
}

/**
 * The legacy form (agents without GetRegisterChallenge): the agent's timestamp within
 * REGISTER_CLOCK_SKEW_MS of the appliance's clock, and its nonce used once.
 */
function legacyNonceUse(input: { timestampUnixMs: number; nonce: Buffer }, now: number): SingleUse {
  if (Math.abs(now - input.timestampUnixMs) > REGISTER_CLOCK_SKEW_MS) {
    throw new CtOpsError('ERR_REGISTER_STALE', 'the request timestamp is more than 5 minutes from the appliance clock; check the host clock, or update the agent (it then needs no correct clock)', {
      skew_ms: now - input.timestampUnixMs,
    });
  }
  // Capped by the appliance's clock too: a timestamp ahead of it must not keep its row longer.
  const rememberUntil = Math.min(input.timestampUnixMs, now) + 2 * REGISTER_CLOCK_SKEW_MS;
  const forgotten = () => new CtOpsError('ERR_REGISTER_STALE', "the request expires before one already forgotten (the appliance's clock was set back); retry later, or update the agent");
  return { value: input.nonce, rememberUntil, forgotten };
}

/**
 * Records the (key, challenge or nonce) pair; throws ERR_REGISTER_REPLAYED when the key used it
 * before, and used.forgotten() when it expires before a row already pruned. Pruned once it
 * expires (register-nonces.ts).
 */
async function rememberUse(tx: TableStores, publicKey: Buffer, used: SingleUse, now: number): Promise<void> {
  const use = await tx.registerNonces.remember(publicKey, used.value, used.rememberUntil, now);
  if (use === 'used') throw new CtOpsError('ERR_REGISTER_REPLAYED', 'this Register request was already seen');
  if (use === 'forgotten') throw used.forgotten();
}

function verifyPossession(input: RegisterInput): void {
  if (!verifyAgentSignature(input.publicKey, registerPayload(input), input.signature)) {
    throw new CtOpsError('ERR_REGISTER_SIGNATURE_INVALID', 'the signature does not match the public key and request');
  }
}

/** The enrolment token the request names, read-only; throws ERR_TOKEN_* unless it could be used now. */
async function usableToken(tx: TableStores, orgToken: string, orgId: string, now: number): Promise<EnrolmentToken> {
  if (orgToken === '') {
    throw new CtOpsError('ERR_TOKEN_REQUIRED', 'this key is not registered and the request has no enrolment token');
  }
  const token = await tx.enrolmentTokens.findBySecretHash(hashSecret(orgToken));
  if (!token || token.orgId !== orgId) throw new CtOpsError('ERR_TOKEN_INVALID', 'the enrolment token is not known to this appliance');
  if (tokenState(token, now) !== 'active') throw unusableTokenError(token, now);
  return token;
}

async function refreshKnownHost(tx: TransactionScope<TableStores>, host: Host, input: RegisterInput, log: Logger, now: number): Promise<Host> {
  const update = { hostname: input.hostname, machineFingerprint: input.machineFingerprint, os: input.os, arch: input.arch, agentVersion: input.agentVersion, at: now };
  await tx.hosts.updateRegistration(host.id, update);
  tx.afterCommit(() => log.info({ host_id: host.id, approval: host.approval }, 'known key registered again'));
  return { ...host, ...update, lastRegisteredAt: now };
}

/** Takes a use of the token and inserts the new host, in the registration's transaction `tx`. */
async function enrolNewHost(tx: TransactionScope<TableStores>, input: RegisterInput, token: EnrolmentToken, deps: RegisterDeps, now: number): Promise<Host> {
  const { orgId } = deps;
  // The read above only spared a refused request any write; taking the use decides, atomically, among racing agents.
  if (!(await tx.enrolmentTokens.consume(token.id, now))) throw unusableTokenError((await tx.enrolmentTokens.get(token.id)) ?? token, now);
  // A second key from a machine that already has a live host is a clone or a
  // reinstall: keep both apart and leave the decision to an admin.
  const twin = await tx.hosts.findLiveByFingerprint(orgId, input.machineFingerprint);
  const host = {
    id: newTimeOrderedId('hst', now),
    orgId,
    ...describedHost(input),
    approval: token.autoApprove && !twin ? ('active' as const) : ('pending' as const),
    enrolmentTokenId: token.id,
    tags: { ...input.tags, ...token.tags },
    fingerprintConflictWith: twin?.id ?? null,
    enrolledAt: now,
  };
  const stored = await tx.hosts.insert(host);
  if (stored === undefined) throw new KeyEnrolledMeanwhile();
  tx.afterCommit(() => deps.log.info({ host_id: host.id, token_id: token.id, install_bundle_id: input.installBundleId, approval: host.approval, fingerprint_conflict_with: host.fingerprintConflictWith }, 'host enrolled'));
  return stored;
}

function unusableTokenError(token: EnrolmentToken, now: number): CtOpsError {
  const details = { token_id: token.id };
  if (token.revokedAt !== null) return new CtOpsError('ERR_TOKEN_REVOKED', 'the enrolment token was revoked', details);
  if (token.expiresAt <= now) return new CtOpsError('ERR_TOKEN_EXPIRED', 'the enrolment token has expired', details);
  return new CtOpsError('ERR_TOKEN_EXHAUSTED', 'the enrolment token has no uses left', details);
}

async function respond(host: Host, deps: RegisterDeps, now: number): Promise<RegisterResponse> {
  switch (host.approval) {
    case 'active': {
      const issued = await deps.jwt.issue(host.id, now);
      return { agent_id: host.id, status: 'AGENT_STATUS_ACTIVE', jwt: issued.jwt, jwt_expires_unix: issued.expiresAt, message: 'approved' };
    }
    case 'pending':
      return {
        agent_id: host.id,
        status: 'AGENT_STATUS_PENDING',
        retry_after_secs: deps.pendingPollSecs,
        message: host.fingerprintConflictWith
          ? 'awaiting admin approval: another host already enrolled from this machine'
          : 'awaiting admin approval',
      };
    case 'rejected':
      return { agent_id: host.id, status: 'AGENT_STATUS_REJECTED', message: 'an admin rejected this host' };
    case 'revoked':
      return { agent_id: host.id, status: 'AGENT_STATUS_REVOKED', message: 'an admin revoked this host' };
  }
}
