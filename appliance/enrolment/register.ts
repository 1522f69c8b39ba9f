import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { RegisterResponse } from '../../common/proto.ts';
import { registerPayload } from '../../common/register-payload.ts';
import type { AgentJwtAuthority } from '../auth/agent-jwt.ts';
import { hashSecret, newId } from '../lib/ids.ts';
import type { EnrolmentToken, Host, Stores } from '../store/index.ts';
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
 * and only otherwise spends one use of the enrolment token. Every refusal is decided
 * by reads before anything is written, so a refused request leaves no row behind
 * (not even its challenge or nonce) and costs the appliance no more than those reads.
 */
export async function register(input: RegisterInput, deps: RegisterDeps, now: number): Promise<RegisterResponse> {
  // Freshness is checked before the signature: a forged or old challenge costs a MAC, not a verification.
  const used = 'challenge' in input ? challengeUse(input.challenge, deps, now) : legacyNonceUse(input, now);
  verifyPossession(input);
  if (!('challenge' in input)) legacyRegisterLog.noted(input.publicKey, input.agentVersion, deps.log);
  const { stores } = deps;
  // The key is looked up before the token: a known key needs none, even an expired one.
  const known = stores.hosts.findByPublicKey(input.publicKey);
  if (known && known.deletedAt !== null) {
    throw new CtOpsError('ERR_AGENT_KEY_RETIRED', 'this key belongs to a deleted host and is retired; enrol again with a new key', { host_id: known.id });
  }
  if (known) {
    rememberUse(input.publicKey, used, deps, now);
    return respond(refreshKnownHost(known, input, deps, now), deps, now);
  }
  const rotatedAway = stores.hosts.findByPreviousKey(input.publicKey);
  if (rotatedAway) throw retiredError(rotatedAway);
  if (input.predecessor && input.rotationNonce) {
    // The kept machine of a resolved identity moves the host to a new key; the shared key is retired.
    const claim = { ...input.predecessor, nonce: input.rotationNonce };
    const host = rotatingHost(input, claim, stores, deps.orgId);
    rememberUse(input.publicKey, used, deps, now);
    return respond(rotateHostKey(input, host, claim, stores, deps.log, now), deps, now);
  }
  if (input.predecessor) {
    // A retired claimant of a resolved identity enrols its new key with the old key's proof, not a token.
    const predecessor = successorPredecessor(input, input.predecessor, stores, deps.orgId, now);
    rememberUse(input.publicKey, used, deps, now);
    return respond(enrolSuccessor(input, predecessor, stores, deps.log, now), deps, now);
  }
  const token = usableToken(input.orgToken, deps, now);
  rememberUse(input.publicKey, used, deps, now);
  return respond(enrolNewHost(input, token, deps, now), deps, now);
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
function rememberUse(publicKey: Buffer, used: SingleUse, deps: RegisterDeps, now: number): void {
  const use = deps.stores.registerNonces.remember(publicKey, used.value, used.rememberUntil, now);
  if (use === 'used') throw new CtOpsError('ERR_REGISTER_REPLAYED', 'this Register request was already seen');
  if (use === 'forgotten') throw used.forgotten();
}

function verifyPossession(input: RegisterInput): void {
  if (!verifyAgentSignature(input.publicKey, registerPayload(input), input.signature)) {
    throw new CtOpsError('ERR_REGISTER_SIGNATURE_INVALID', 'the signature does not match the public key and request');
  }
}

/** The enrolment token the request names, read-only; throws ERR_TOKEN_* unless it could be used now. */
function usableToken(orgToken: string, deps: RegisterDeps, now: number): EnrolmentToken {
  if (orgToken === '') {
    throw new CtOpsError('ERR_TOKEN_REQUIRED', 'this key is not registered and the request has no enrolment token');
  }
  const token = deps.stores.enrolmentTokens.findBySecretHash(hashSecret(orgToken));
  if (!token || token.orgId !== deps.orgId) throw new CtOpsError('ERR_TOKEN_INVALID', 'the enrolment token is not known to this appliance');
  if (tokenState(token, now) !== 'active') throw unusableTokenError(token, now);
  return token;
}

function refreshKnownHost(host: Host, input: RegisterInput, deps: RegisterDeps, now: number): Host {
  const update = { hostname: input.hostname, machineFingerprint: input.machineFingerprint, os: input.os, arch: input.arch, agentVersion: input.agentVersion, at: now };
  deps.stores.hosts.updateRegistration(host.id, update);
  deps.log.info({ host_id: host.id, approval: host.approval }, 'known key registered again');
  return { ...host, ...update, lastRegisteredAt: now };
}

function enrolNewHost(input: RegisterInput, token: EnrolmentToken, deps: RegisterDeps, now: number): Host {
  const { stores, orgId } = deps;
  return stores.transaction(() => {
    // The read above only spared a refused request any write; taking the use decides, atomically, among racing agents.
    if (!stores.enrolmentTokens.consume(token.id, now)) throw unusableTokenError(stores.enrolmentTokens.get(token.id) ?? token, now);
    // A second key from a machine that already has a live host is a clone or a
    // reinstall: keep both apart and leave the decision to an admin.
    const twin = stores.hosts.findLiveByFingerprint(orgId, input.machineFingerprint);
    const host = {
      id: newId('hst'),
      orgId,
      ...describedHost(input),
      approval: token.autoApprove && !twin ? ('active' as const) : ('pending' as const),
      enrolmentTokenId: token.id,
      tags: { ...input.tags, ...token.tags },
      fingerprintConflictWith: twin?.id ?? null,
      enrolledAt: now,
    };
    stores.hosts.insert(host);
    deps.log.info({ host_id: host.id, token_id: token.id, approval: host.approval, fingerprint_conflict_with: host.fingerprintConflictWith }, 'host enrolled');
    return stores.hosts.get(host.id) as Host;
  });
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
