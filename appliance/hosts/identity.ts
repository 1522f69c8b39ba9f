import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { Host } from '../model/host.ts';
import type { Claimant, PresenceRegistry } from '../presence/registry.ts';
import type { PresenceService } from '../presence/service.ts';
import type { Stores } from '../store/index.ts';
import type { HostFacts } from './facts.ts';

/**
 * How long a second machine stays away after its stream was refused while the host is flagged
 * (the retry hint, ms). Long enough that two clones cost a handful of stream opens a minute, short
 * enough that the retired one learns an admin's decision within about half a minute.
 */
export const IDENTITY_CONFLICT_RETRY_MS = 15_000;

/**
 * How long a resolution lasts at most (ms): retired machines that are running re-enrol within
 * seconds of their next stream; one switched off for a week is judged afresh when it returns
 * (flagged again beside the kept machine, or by alternation), rather than retired by a pin forever.
 */
export const IDENTITY_RESOLUTION_MAX_MS = 7 * 24 * 3_600_000;

export interface IdentityDeps {
  stores: Stores;
  presence: PresenceRegistry;
  services: { readonly presence: Pick<PresenceService, 'holderElsewhere'> };
  log: Logger;
}

/**
 * Decides whether the machine behind a new Heartbeat stream may hold the host's identity, from the
 * facts of its first heartbeat; the one place that answers it. Returns the refusal, or undefined
 * when the stream may become the host's current one.
 *
 * - After an admin resolved a conflict, only the kept claimant may stream; another one is told
 *   ERR_IDENTITY_RETIRED (it then enrols under a new key, see enrolment/successor.ts). The kept one
 *   is still judged as below (detection never pauses); a resolution ends at the latest after
 *   IDENTITY_RESOLUTION_MAX_MS.
 * - Two claimants are detected when the live stream belongs to a machine with another fingerprint,
 *   or when the instances alternate (A → B → A within CLAIM_HISTORY_MS: PresenceRegistry.recordClaim).
 *   A plain restart is a new instance on the same machine that the old one never follows: not flagged.
 * - While flagged, the holder of the live stream keeps it and any other claimant is refused with
 *   ERR_HOST_IDENTITY_CONFLICT and a retry hint, so the machines stop displacing each other.
 * - A stream that sends no HostFacts (agents before 0.2, or a peer that leaves them out) says no
 *   machine: it is accepted only while the host is not flagged nor resolved (unidentifiedRefusal).
 * The flag, the claimants and the audit event are committed together; the warning is logged after.
 */
export async function claimIdentity(deps: IdentityDeps, stored: Host, claimant: Claimant | undefined, now: number): Promise<CtOpsError | undefined> {
  const { stores, presence, log } = deps;
  const host = await endStaleResolution(deps, stored, now);
  if (claimant === undefined) return unidentifiedRefusal(deps, host, now);
  if (host.identityState === 'resolved' && !isKept(host, claimant)) {
    await stores.hostEvents.record(host.id, now, 'identity-retired-claimant', claimantFields(claimant));
    log.warn({ host_id: host.id, ...claimantFields(claimant) }, 'retired claimant of a resolved identity told to enrol anew');
    return retiredError(host);
  }
  // The live stream's machine: another stream here, else one on another instance (host_streams).
  // The stream here may be this claimant's own (attached before its claim is judged).
  const here = presence.claimantOf(host.id);
  const holder = here !== undefined && here !== claimant ? here : ((await deps.services.presence.holderElsewhere(host.id)) ?? here);
  const alternated = presence.recordClaim(host.id, claimant.instanceId, now);
  const rival = holder !== undefined && holder.instanceId !== claimant.instanceId ? holder : undefined;
  if (host.identityState === 'conflict') {
    await stores.transact((tx) => tx.hostClaimants.seen({ hostId: host.id, ...claimant }, now));
    return rival === undefined ? undefined : conflictError(host);
  }
  // Also while resolved: the kept machine's key may be copied again, or a retired clone may share
  // the kept fingerprint; both show as another machine beside it or as alternation, as before.
  const otherMachine = rival !== undefined && rival.machineFingerprint !== claimant.machineFingerprint;
  if (!otherMachine && !alternated) return undefined;
  const claimants = [...(rival ? [rival] : []), claimant];
  await stores.transact(async (tx) => {
    if (!(await tx.hosts.flagIdentityConflict(host.id))) return;
    for (const each of claimants) await tx.hostClaimants.seen({ hostId: host.id, ...each }, now);
    await tx.hostEvents.record(host.id, now, 'identity-conflict', { reason: otherMachine ? 'another-fingerprint' : 'alternating', claimants: claimants.map(claimantFields) });
    tx.afterCommit(() =>
      log.warn({ host_id: host.id, reason: otherMachine ? 'another-fingerprint' : 'alternating', claimants: claimants.map(claimantFields) }, 'identity conflict: two machines use one host key'),
    );
  });
  // With no live stream left to keep, the claimant in hand holds the identity until an admin decides.
  return rival === undefined ? undefined : conflictError(host);
}

/**
 * The host as judged now: a resolution older than IDENTITY_RESOLUTION_MAX_MS is ended (recorded as
 * an 'identity-resolution-expired' event with the re-enrolments left unused), so a retired machine
 * that never comes back cannot keep the host's judgement bent for good.
 */
async function endStaleResolution(deps: IdentityDeps, host: Host, now: number): Promise<Host> {
  if (host.identityState !== 'resolved' || host.identityResolvedAt === null || now - host.identityResolvedAt < IDENTITY_RESOLUTION_MAX_MS) return host;
  await deps.stores.transact(async (tx) => {
    if (!(await tx.hosts.clearIdentityState(host.id))) return;
    await tx.hostEvents.record(host.id, now, 'identity-resolution-expired', { unused_reenrolments: host.identitySuccessorsAllowed });
    tx.afterCommit(() => deps.log.info({ host_id: host.id, unused_reenrolments: host.identitySuccessorsAllowed }, 'identity resolution expired'));
  });
  return { ...host, identityState: null, identityKeptFingerprint: null, identityKeptInstance: null, identitySuccessorsAllowed: 0, identityResolvedAt: null, identityRotationNonceSha256: null };
}

/**
 * Stores the facts a stream reported when they differ from the host's record; a new hostname is
 * recorded as a 'renamed' event (the admin's list of previous names).
 */
export async function refreshFacts(deps: Pick<IdentityDeps, 'stores' | 'log'>, host: Host, facts: HostFacts, now: number): Promise<Host> {
  const { stores, log } = deps;
  const unchanged =
    host.hostname === facts.hostname && host.os === facts.os && host.osVersion === facts.osVersion && host.arch === facts.arch &&
    host.agentVersion === facts.agentVersion && JSON.stringify(host.ipAddresses) === JSON.stringify(facts.ipAddresses);
  if (unchanged) return host;
  const update = { hostname: facts.hostname, os: facts.os, osVersion: facts.osVersion, arch: facts.arch, agentVersion: facts.agentVersion, ipAddresses: facts.ipAddresses };
  await stores.transact(async (tx) => {
    await tx.hosts.recordFacts(host.id, update);
    if (host.hostname === facts.hostname) return;
    await tx.hostEvents.record(host.id, now, 'renamed', { from: host.hostname, to: facts.hostname });
    tx.afterCommit(() => log.info({ host_id: host.id, from: host.hostname, to: facts.hostname }, 'host renamed'));
  });
  return { ...host, ...update };
}

/** Whether the claimant is the machine an admin kept: by fingerprint, or by process instance when fingerprints were equal. */
export function isKept(host: Host, claimant: Pick<Claimant, 'instanceId' | 'machineFingerprint'>): boolean {
  if (host.identityKeptInstance !== null) return claimant.instanceId === host.identityKeptInstance;
  return claimant.machineFingerprint === host.identityKeptFingerprint;
}

/**
 * A stream without HostFacts while the host is flagged or resolved: it cannot show it is the kept
 * machine, so leaving the facts out must not skip the judgement. Flagged: refused like any other
 * claimant (retry hint); resolved: told its identity is retired (the kept agent always sends facts).
 */
async function unidentifiedRefusal(deps: IdentityDeps, host: Host, now: number): Promise<CtOpsError | undefined> {
  if (host.identityState === 'conflict') return conflictError(host);
  if (host.identityState !== 'resolved') return undefined;
  await deps.stores.hostEvents.record(host.id, now, 'identity-retired-claimant', { unidentified: true });
  deps.log.warn({ host_id: host.id, unidentified: true }, 'claimant without host facts of a resolved identity told to enrol anew');
  return retiredError(host);
}

/**
 * A JWT issued before the host's key was rotated (VerifiedAgentJwt.issuedAt, seconds) was held by
 * the machines that shared the old key, the retired clone among them: refused at once with
 * ERR_IDENTITY_RETIRED (the clone then re-enrols; the kept machine holds a JWT issued by the
 * rotation). Compared in whole seconds, the JWT's resolution: one issued in the second of the
 * rotation still passes.
 */
export function credentialRefusal(host: Host, issuedAtSecs: number): CtOpsError | undefined {
  if (host.keyRotatedAt === null || issuedAtSecs >= Math.floor(host.keyRotatedAt / 1000)) return undefined;
  return retiredError(host);
}

export function retiredError(host: Host): CtOpsError {
  return new CtOpsError('ERR_IDENTITY_RETIRED', 'an admin kept another machine for this identity; create a new identity and enrol as a new host', { host_id: host.id });
}

function conflictError(host: Host): CtOpsError {
  return new CtOpsError(
    'ERR_HOST_IDENTITY_CONFLICT',
    'another machine is using this host identity; an admin must resolve it (hosts resolve); retry later',
    { host_id: host.id, retry_after_ms: IDENTITY_CONFLICT_RETRY_MS },
  );
}

function claimantFields(claimant: Claimant): Record<string, string> {
  return { instance_id: claimant.instanceId, machine_fingerprint: claimant.machineFingerprint, hostname: claimant.hostname, source: claimant.source };
}
