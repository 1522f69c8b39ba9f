import { CtOpsError } from '../../common/errors.ts';
import type { Host, HostClaimant } from '../model/host.ts';
import type { HostStore } from '../store/hosts.ts';
import { offerKeyRotation, pendingRotationMark } from '../enrolment/key-rotation.ts';
import type { HostDeps } from './deps.ts';
import { isKept, retiredError } from './identity.ts';
import { hostOfOrg } from './lookup.ts';

/** The most retired machines one resolution lets re-enrol (a handful of clones; a fleet of them is a new deployment). */
export const MAX_SUCCESSORS_PER_RESOLUTION = 4;

/**
 * An admin resolves a flagged host (two machines using its key) by keeping one claimant, named by
 * its instance id or machine fingerprint (`hosts show` lists them). The kept machine is pinned by
 * its fingerprint when no other claimant shares it, else by its process instance (a cloned VM keeps
 * the fingerprint). The other machines may enrol once each as a new pending host with a proof
 * signed by the retired key (enrolment/successor.ts): one allowance per other fingerprint, plus one
 * for clones sharing the kept fingerprint (the kept machine's own earlier processes are among those
 * instances, so instances are not counted), at most MAX_SUCCESSORS_PER_RESOLUTION. The resolution
 * ends when all have, or after IDENTITY_RESOLUTION_MAX_MS (hosts/identity.ts).
 * The kept machine is then asked to rotate its key (enrolment/key-rotation.ts), on its live stream
 * or its next accepted one: once it has, the shared key is retired and the pin no longer matters.
 * After commit: a live stream of a machine not kept (or of one that never said) is closed with
 * ERR_IDENTITY_RETIRED, the held tasks go to the kept one if it is online, and it is offered the rotation.
 * Throws ERR_HOST_NOT_FOUND, ERR_HOST_STATE_CONFLICT (the host is not flagged), ERR_INVALID_ARGUMENT
 * (no claimant matches `keep`, or it matches several machines).
 */
export async function resolveIdentity(deps: HostDeps, orgId: string, hostId: string, keep: string, by: string, now: number): Promise<Host> {
  const { stores, presence, tasks, log } = deps;
  return stores.transact(async (tx) => {
    const host = await flaggedHost(tx.hosts, orgId, hostId, ['conflict']);
    const claimants = await tx.hostClaimants.list(hostId);
    const kept = claimants.filter((claimant) => claimant.instanceId === keep || claimant.machineFingerprint === keep);
    const keptFingerprints = new Set(kept.map((claimant) => claimant.machineFingerprint));
    if (kept.length === 0 || keptFingerprints.size > 1) {
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `--keep must name one claimant of ${hostId} by instance id or machine fingerprint (hosts show lists them)`, { host_id: hostId, field: 'keep' });
    }
    const chosen = kept[0] as HostClaimant;
    const fingerprintShared = claimants.some((claimant) => claimant.machineFingerprint === chosen.machineFingerprint && claimant.instanceId !== chosen.instanceId);
    // Pinned by instance only when it must be: one fingerprint shared by kept and retired machines.
    const pin = fingerprintShared && keep === chosen.instanceId ? { fingerprint: null, instance: chosen.instanceId } : { fingerprint: chosen.machineFingerprint, instance: null };
    const retired = claimants.filter((claimant) => !isKept({ ...host, identityKeptFingerprint: pin.fingerprint, identityKeptInstance: pin.instance }, claimant));
    if (retired.length === 0) {
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `--keep ${keep} matches every claimant of ${hostId}; name one process instance (hosts show lists them), or --dismiss a false alarm`, { host_id: hostId, field: 'keep' });
    }
    const successors = Math.min(MAX_SUCCESSORS_PER_RESOLUTION, new Set(retired.map((claimant) => claimant.machineFingerprint)).size);
    if (!(await tx.hosts.resolveIdentity(hostId, pin, successors, pendingRotationMark(), now))) {
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', 'the host has no identity conflict to resolve', { host_id: hostId });
    }
    await tx.hostClaimants.clear(hostId);
    await tx.hostEvents.record(hostId, now, 'identity-resolved', { by, kept_instance_id: chosen.instanceId, kept_fingerprint: chosen.machineFingerprint, kept_hostname: chosen.hostname, retired: retired.length, reenrolments: successors });
    const resolved = (await tx.hosts.get(hostId)) as Host;
    tx.afterCommit(async () => {
      presence.forgetClaims(hostId);
      log.warn({ host_id: hostId, by, kept_instance_id: chosen.instanceId, kept_fingerprint: chosen.machineFingerprint, pinned_by: pin.instance ? 'instance' : 'fingerprint', retired: retired.length, reenrolments: successors }, 'identity conflict resolved');
      if (!presence.isStreaming(hostId)) {
        // Its stream, if any, is on another instance, which cannot tell here which machine holds it:
        // that stream ends retryable, and the agent's next stream is judged against the resolution.
        presence.disconnect(hostId, new CtOpsError('ERR_INGEST_UNREACHABLE', "this host's identity was resolved on another instance; reconnect"), 'revoked');
        return;
      }
      const holder = presence.registry.claimantOf(hostId);
      // A live stream that never said which machine it is cannot be the kept one either.
      if (holder === undefined || !isKept(resolved, holder)) {
        presence.disconnect(hostId, retiredError(resolved), 'revoked');
      } else {
        await tasks.dispatch(hostId);
        await offerKeyRotation(deps, resolved, (message) => presence.registry.send(hostId, message));
      }
    });
    return resolved;
  });
}

/**
 * An admin dismisses a flag as a false alarm (or ends a resolution early): the host is judged as any
 * other again, its claimants are forgotten, no machine is retired, held tasks go out. Recorded as an
 * 'identity-dismissed' event. Throws ERR_HOST_NOT_FOUND, ERR_HOST_STATE_CONFLICT (neither flagged
 * nor resolved).
 */
export async function dismissIdentityConflict(deps: HostDeps, orgId: string, hostId: string, by: string, now: number): Promise<Host> {
  const { stores, presence, tasks, log } = deps;
  return stores.transact(async (tx) => {
    const host = await flaggedHost(tx.hosts, orgId, hostId, ['conflict', 'resolved']);
    if (!(await tx.hosts.clearIdentityState(hostId))) {
      throw new CtOpsError('ERR_HOST_STATE_CONFLICT', 'the host has no identity conflict to dismiss', { host_id: hostId });
    }
    await tx.hostClaimants.clear(hostId);
    await tx.hostEvents.record(hostId, now, 'identity-dismissed', { by, was: host.identityState });
    tx.afterCommit(async () => {
      presence.forgetClaims(hostId);
      log.warn({ host_id: hostId, by, was: host.identityState }, 'identity conflict dismissed');
      await tasks.dispatch(hostId);
    });
    return (await tx.hosts.get(hostId)) as Host;
  });
}

/** The live host of the org in one of `states`; ERR_HOST_NOT_FOUND or ERR_HOST_STATE_CONFLICT otherwise. */
async function flaggedHost(hosts: HostStore, orgId: string, hostId: string, states: ReadonlyArray<Host['identityState']>): Promise<Host> {
  const host = await hostOfOrg(hosts, orgId, hostId);
  if (!states.includes(host.identityState)) {
    throw new CtOpsError('ERR_HOST_STATE_CONFLICT', 'the host has no identity conflict to resolve', { host_id: hostId, identity_state: host.identityState });
  }
  return host;
}
