import type { Tags } from './enrolment.ts';

/*
 * The host records as workflows see them, whatever backend stores them (appliance/store/hosts.ts,
 * host-events.ts, host-claimants.ts, host-trust.ts, host-vitals.ts map rows to these).
 */

/** What an admin decided about a host. Connectivity (online/offline) is not stored here. */
export type Approval = 'pending' | 'active' | 'rejected' | 'revoked';

/**
 * Whether more than one machine uses the host's key: 'conflict' while flagged (tasks and inventory
 * held), 'resolved' once an admin kept one until the others re-enrolled; null normally.
 */
export type IdentityState = 'conflict' | 'resolved';

export interface Host {
  id: string;
  orgId: string;
  publicKey: Buffer;
  hostname: string;
  machineFingerprint: string;
  os: string;
  arch: string;
  agentVersion: string;
  approval: Approval;
  enrolmentTokenId: string | null;
  tags: Tags;
  /** Another live host that reported the same machine fingerprint when this one enrolled. */
  fingerprintConflictWith: string | null;
  enrolledAt: number;
  decidedAt: number | null;
  decidedBy: string | null;
  lastRegisteredAt: number;
  lastHeartbeatAt: number | null;
  lastDisconnectedAt: number | null;
  heartbeatIntervalSecs: number | null;
  cpuPercent: number | null;
  memoryPercent: number | null;
  diskPercent: number | null;
  uptimeSeconds: number | null;
  /** Set when an admin deleted the host: its key is retired and it is no longer listed. */
  deletedAt: number | null;
  deletedBy: string | null;
  /** The agent's clock minus the appliance's at its latest heartbeat that carried its time (ms); null before one did. */
  clockOffsetMs: number | null;
  /** Kernel / OS release as the agent last reported it ('' before any report). */
  osVersion: string;
  ipAddresses: string[];
  identityState: IdentityState | null;
  /** The claimant an admin kept (by fingerprint, or by process instance when fingerprints are equal). */
  identityKeptFingerprint: string | null;
  identityKeptInstance: string | null;
  /** How many retired claimants may still enrol once each as a new pending host with a proof by this key. */
  identitySuccessorsAllowed: number;
  /** When an admin resolved the conflict (ms since the epoch); null unless identityState is 'resolved'. */
  identityResolvedAt: number | null;
  /** SHA-256 of the key rotation nonce last offered to the kept machine; null when no rotation is pending. */
  identityRotationNonceSha256: Buffer | null;
  /** The key the last rotation retired, and when (ms since the epoch); null before any rotation. */
  previousPublicKey: Buffer | null;
  keyRotatedAt: number | null;
  /** The host whose record this one took over ("approve as replacement"), and the reverse link. */
  replaces: string | null;
  replacedBy: string | null;
  /**
   * The install bundle the agent said it was installed from when it enrolled (RegisterRequest
   * .install_bundle_id, a bnd_… id): its claim, not signed, shown as provenance; null when it named none.
   */
  installBundleId: string | null;
}

/** The descriptive facts an agent reports on its streams (HostFacts), as stored. */
export interface HostFactsUpdate {
  hostname: string;
  os: string;
  osVersion: string;
  arch: string;
  agentVersion: string;
  ipAddresses: string[];
}

export type NewHost = Pick<
  Host,
  | 'id' | 'orgId' | 'publicKey' | 'hostname' | 'machineFingerprint' | 'os' | 'arch' | 'agentVersion'
  | 'approval' | 'enrolmentTokenId' | 'tags' | 'fingerprintConflictWith' | 'enrolledAt'
> & {
  /** The install bundle the agent claims (Host.installBundleId); absent or null when it named none. */
  installBundleId?: string | null;
};

export interface RegistrationUpdate {
  hostname: string;
  machineFingerprint: string;
  os: string;
  arch: string;
  agentVersion: string;
  at: number;
}

export interface HeartbeatUpdate {
  hostId: string;
  receivedAt: number;
  intervalSecs: number;
  agentVersion: string;
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  uptimeSeconds: number;
  /** Null when the heartbeat carried no agent time: the recorded offset is kept. */
  clockOffsetMs: number | null;
}

/** What happened to a host, as its audit record keeps it. */
export type HostEventKind =
  | 'renamed'
  | 'identity-conflict'
  | 'identity-resolved'
  | 'identity-dismissed'
  | 'identity-resolution-expired'
  | 'identity-retired-claimant'
  | 'successor-enrolled'
  | 'identity-key-rotated'
  | 'replaced-by'
  | 'replaces';

export interface HostEvent {
  id: number;
  hostId: string;
  /** Unix milliseconds. */
  at: number;
  kind: HostEventKind;
  details: Record<string, unknown>;
}

/** One machine using a host's key, as its stream's HostFacts describe it. */
export interface Claimant {
  /** Random per agent process: a restart changes it. */
  readonly instanceId: string;
  readonly machineFingerprint: string;
  readonly hostname: string;
  /** The peer address the stream came from. */
  readonly source: string;
}

/** One machine (agent process) seen behind a host's key while the host was flagged. */
export interface HostClaimant {
  hostId: string;
  /** The agent process instance (HostFacts.instance_id); also the claimant's id for `hosts resolve --keep`. */
  instanceId: string;
  machineFingerprint: string;
  hostname: string;
  /** The peer address its stream came from. */
  source: string;
  firstSeen: number;
  lastSeen: number;
}

/** An active host and the trust bundle its agent last reported. */
export interface HostTrust {
  hostId: string;
  hostname: string;
  trustGeneration: number;
  /** Hex SHA-256 of the bundle's signed payload (common/trust-bundle.ts trustBundleDigest); '' for none. */
  trustDigest: string;
}

/** One heartbeat's vitals as kept in the history (times in ms since the epoch, percentages 0–100). */
export interface VitalsSample {
  hostId: string;
  receivedAt: number;
  agentTimestamp: number;
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  uptimeSeconds: number;
}
