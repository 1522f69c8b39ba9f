import type { Db } from './database.ts';
import type { Tags } from './enrolment-tokens.ts';

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
>;

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

interface HostRow {
  id: string;
  org_id: string;
  public_key: Buffer;
  hostname: string;
  machine_fingerprint: string;
  os: string;
  arch: string;
  agent_version: string;
  approval: Approval;
  enrolment_token_id: string | null;
  tags: string;
  fingerprint_conflict_with: string | null;
  enrolled_at: number;
  decided_at: number | null;
  decided_by: string | null;
  last_registered_at: number;
  last_heartbeat_at: number | null;
  last_disconnected_at: number | null;
  heartbeat_interval_secs: number | null;
  cpu_percent: number | null;
  memory_percent: number | null;
  disk_percent: number | null;
  uptime_seconds: number | null;
  deleted_at: number | null;
  deleted_by: string | null;
  clock_offset_ms: number | null;
  os_version: string;
  ip_addresses: string;
  identity_state: IdentityState | null;
  identity_kept_fingerprint: string | null;
  identity_kept_instance: string | null;
  identity_successors_allowed: number;
  identity_resolved_at: number | null;
  identity_rotation_nonce_sha256: Buffer | null;
  previous_public_key: Buffer | null;
  key_rotated_at: number | null;
  replaces: string | null;
  replaced_by: string | null;
}

/** Owns the hosts table. */
export class HostStore {
  readonly #get;
  readonly #byPublicKey;
  readonly #list;
  readonly #liveByFingerprint;
  readonly #insert;
  readonly #updateRegistration;
  readonly #decide;
  readonly #heartbeat;
  readonly #disconnected;
  readonly #markDeleted;
  readonly #facts;
  readonly #flagConflict;
  readonly #resolveIdentity;
  readonly #clearIdentity;
  readonly #takeSuccessor;
  readonly #takeOver;
  readonly #replacedBy;
  readonly #byPreviousKey;
  readonly #offerRotation;
  readonly #rotateKey;

  constructor(db: Db) {
    this.#get = db.prepare<[string], HostRow>('SELECT * FROM hosts WHERE id = ?');
    this.#byPublicKey = db.prepare<[Buffer], HostRow>('SELECT * FROM hosts WHERE public_key = ?');
    this.#list = db.prepare<[string], HostRow>('SELECT * FROM hosts WHERE org_id = ? AND deleted_at IS NULL ORDER BY enrolled_at, id');
    this.#liveByFingerprint = db.prepare<[string, string], HostRow>(
      "SELECT * FROM hosts WHERE org_id = ? AND machine_fingerprint = ? AND approval IN ('pending', 'active') AND deleted_at IS NULL ORDER BY enrolled_at LIMIT 1",
    );
    this.#insert = db.prepare(
      `INSERT INTO hosts (id, org_id, public_key, hostname, machine_fingerprint, os, arch, agent_version, approval,
                          enrolment_token_id, tags, fingerprint_conflict_with, enrolled_at, last_registered_at)
       VALUES (@id, @orgId, @publicKey, @hostname, @machineFingerprint, @os, @arch, @agentVersion, @approval,
               @enrolmentTokenId, @tags, @fingerprintConflictWith, @enrolledAt, @enrolledAt)`,
    );
    this.#updateRegistration = db.prepare(
      `UPDATE hosts SET hostname = @hostname, machine_fingerprint = @machineFingerprint, os = @os, arch = @arch,
                        agent_version = @agentVersion, last_registered_at = @at WHERE id = @id`,
    );
    this.#decide = db.prepare(
      'UPDATE hosts SET approval = @to, decided_at = @at, decided_by = @by WHERE id = @id AND approval IN (SELECT value FROM json_each(@from))',
    );
    this.#heartbeat = db.prepare(
      `UPDATE hosts SET last_heartbeat_at = @receivedAt, heartbeat_interval_secs = @intervalSecs, agent_version = @agentVersion,
                        cpu_percent = @cpuPercent, memory_percent = @memoryPercent, disk_percent = @diskPercent,
                        uptime_seconds = @uptimeSeconds, clock_offset_ms = COALESCE(@clockOffsetMs, clock_offset_ms)
       WHERE id = @hostId`,
    );
    this.#disconnected = db.prepare('UPDATE hosts SET last_disconnected_at = ? WHERE id = ?');
    this.#markDeleted = db.prepare<[number, string, string]>('UPDATE hosts SET deleted_at = ?, deleted_by = ? WHERE id = ? AND deleted_at IS NULL');
    this.#facts = db.prepare(
      `UPDATE hosts SET hostname = @hostname, os = @os, os_version = @osVersion, arch = @arch, agent_version = @agentVersion,
                        ip_addresses = @ipAddresses WHERE id = @id`,
    );
    this.#flagConflict = db.prepare<[string]>("UPDATE hosts SET identity_state = 'conflict' WHERE id = ? AND identity_state IS NOT 'conflict'");
    this.#resolveIdentity = db.prepare(
      `UPDATE hosts SET identity_state = 'resolved', identity_kept_fingerprint = @fingerprint, identity_kept_instance = @instance,
                        identity_successors_allowed = @successors, identity_resolved_at = @at, identity_rotation_nonce_sha256 = @rotation
       WHERE id = @id AND identity_state = 'conflict'`,
    );
    this.#clearIdentity = db.prepare<[string]>(
      `UPDATE hosts SET identity_state = NULL, identity_kept_fingerprint = NULL, identity_kept_instance = NULL,
                        identity_successors_allowed = 0, identity_resolved_at = NULL, identity_rotation_nonce_sha256 = NULL
       WHERE id = ? AND identity_state IS NOT NULL`,
    );
    // The last allowance used ends the resolution: the kept machine is then the only one left.
    this.#takeSuccessor = db.prepare<[string]>(
      `UPDATE hosts SET identity_successors_allowed = identity_successors_allowed - 1,
                        identity_state = CASE WHEN identity_successors_allowed = 1 AND identity_state = 'resolved' THEN NULL ELSE identity_state END,
                        identity_kept_fingerprint = CASE WHEN identity_successors_allowed = 1 THEN NULL ELSE identity_kept_fingerprint END,
                        identity_kept_instance = CASE WHEN identity_successors_allowed = 1 THEN NULL ELSE identity_kept_instance END,
                        identity_resolved_at = CASE WHEN identity_successors_allowed = 1 THEN NULL ELSE identity_resolved_at END
       WHERE id = ? AND identity_successors_allowed > 0`,
    );
    this.#byPreviousKey = db.prepare<[Buffer], HostRow>('SELECT * FROM hosts WHERE previous_public_key = ?');
    this.#offerRotation = db.prepare<[Buffer, string]>('UPDATE hosts SET identity_rotation_nonce_sha256 = ? WHERE id = ? AND identity_rotation_nonce_sha256 IS NOT NULL');
    // The resolution ends with the rotation; the re-enrolment allowance (and the time it lasts) outlives it.
    this.#rotateKey = db.prepare(
      `UPDATE hosts SET public_key = @newKey, previous_public_key = @oldKey, key_rotated_at = @at, identity_rotation_nonce_sha256 = NULL,
                        identity_state = CASE WHEN identity_state = 'resolved' THEN NULL ELSE identity_state END,
                        identity_kept_fingerprint = NULL, identity_kept_instance = NULL
       WHERE id = @id AND public_key = @oldKey AND identity_rotation_nonce_sha256 = @nonceSha256`,
    );
    this.#takeOver = db.prepare<[string, string, string]>('UPDATE hosts SET replaces = ?, tags = ? WHERE id = ? AND replaces IS NULL');
    this.#replacedBy = db.prepare<[string, string]>('UPDATE hosts SET replaced_by = ? WHERE id = ?');
  }

  get(id: string): Host | undefined {
    const row = this.#get.get(id);
    return row && toHost(row);
  }

  findByPublicKey(publicKey: Buffer): Host | undefined {
    const row = this.#byPublicKey.get(publicKey);
    return row && toHost(row);
  }

  /** The host whose key the last rotation retired was `publicKey`, if any. */
  findByPreviousKey(publicKey: Buffer): Host | undefined {
    const row = this.#byPreviousKey.get(publicKey);
    return row && toHost(row);
  }

  list(orgId: string): Host[] {
    return this.#list.all(orgId).map(toHost);
  }

  /** The earliest pending or active host of the organisation with this machine fingerprint. */
  findLiveByFingerprint(orgId: string, machineFingerprint: string): Host | undefined {
    const row = this.#liveByFingerprint.get(orgId, machineFingerprint);
    return row && toHost(row);
  }

  insert(host: NewHost): void {
    this.#insert.run({ ...host, tags: JSON.stringify(host.tags) });
  }

  updateRegistration(id: string, update: RegistrationUpdate): void {
    this.#updateRegistration.run({ id, ...update });
  }

  /**
   * Moves a host to a new approval state if it is in one of `from`; false otherwise.
   * The check and the write are one statement, so two admins cannot race past it.
   */
  decide(id: string, to: Approval, from: readonly Approval[], at: number, by: string): boolean {
    return this.#decide.run({ id, to, from: JSON.stringify(from), at, by }).changes === 1;
  }

  /** Latest vitals and liveness of a host; never touches its approval. */
  recordHeartbeat(update: HeartbeatUpdate): void {
    this.#heartbeat.run(update);
  }

  recordDisconnect(id: string, at: number): void {
    this.#disconnected.run(at, id);
  }

  /** Soft-deletes a host (retiring its key); false when it was already deleted. */
  markDeleted(id: string, at: number, by: string): boolean {
    return this.#markDeleted.run(at, by, id).changes === 1;
  }

  /** Stores the facts a stream reported; never touches approval or the identity key. */
  recordFacts(id: string, facts: HostFactsUpdate): void {
    this.#facts.run({ id, ...facts, ipAddresses: JSON.stringify(facts.ipAddresses) });
  }

  /** Flags the host: two machines use its key. False when it already was. */
  flagIdentityConflict(id: string): boolean {
    return this.#flagConflict.run(id).changes === 1;
  }

  /** Records the admin's choice and how many others may re-enrol; false unless the host was flagged. */
  resolveIdentity(id: string, kept: { fingerprint: string | null; instance: string | null }, successors: number, rotationNonceSha256: Buffer, at: number): boolean {
    return this.#resolveIdentity.run({ id, ...kept, successors, rotation: rotationNonceSha256, at }).changes === 1;
  }

  /** Replaces the pending rotation's nonce hash with that of a nonce offered now; false when no rotation is pending. */
  offerKeyRotation(id: string, nonceSha256: Buffer): boolean {
    return this.#offerRotation.run(nonceSha256, id).changes === 1;
  }

  /**
   * Moves the host to `newKey` when `oldKey` is its current key and `nonceSha256` the pending
   * rotation's; ends a resolution and its pin. False when either does not match (already rotated, or refused).
   */
  rotateKey(id: string, oldKey: Buffer, newKey: Buffer, nonceSha256: Buffer, at: number): boolean {
    return this.#rotateKey.run({ id, oldKey, newKey, nonceSha256, at }).changes === 1;
  }

  /** Ends a conflict or a resolution: the host is judged as any other again. False when it had neither. */
  clearIdentityState(id: string): boolean {
    return this.#clearIdentity.run(id).changes === 1;
  }

  /** Spends one successor allowance (a retired claimant enrolling anew); false when none is left. */
  takeSuccessorAllowance(id: string): boolean {
    return this.#takeSuccessor.run(id).changes === 1;
  }

  /** The new host takes over the old one's tags and links both records; false when the new one already replaced a host. */
  takeOver(newId: string, old: Host): boolean {
    if (this.#takeOver.run(old.id, JSON.stringify(old.tags), newId).changes !== 1) return false;
    this.#replacedBy.run(newId, old.id);
    return true;
  }
}

function toHost(row: HostRow): Host {
  return {
    id: row.id,
    orgId: row.org_id,
    publicKey: row.public_key,
    hostname: row.hostname,
    machineFingerprint: row.machine_fingerprint,
    os: row.os,
    arch: row.arch,
    agentVersion: row.agent_version,
    approval: row.approval,
    enrolmentTokenId: row.enrolment_token_id,
    tags: JSON.parse(row.tags) as Tags,
    fingerprintConflictWith: row.fingerprint_conflict_with,
    enrolledAt: row.enrolled_at,
    decidedAt: row.decided_at,
    decidedBy: row.decided_by,
    lastRegisteredAt: row.last_registered_at,
    lastHeartbeatAt: row.last_heartbeat_at,
    lastDisconnectedAt: row.last_disconnected_at,
    heartbeatIntervalSecs: row.heartbeat_interval_secs,
    cpuPercent: row.cpu_percent,
    memoryPercent: row.memory_percent,
    diskPercent: row.disk_percent,
    uptimeSeconds: row.uptime_seconds,
    deletedAt: row.deleted_at,
    deletedBy: row.deleted_by,
    clockOffsetMs: row.clock_offset_ms,
    osVersion: row.os_version,
    ipAddresses: JSON.parse(row.ip_addresses) as string[],
    identityState: row.identity_state,
    identityKeptFingerprint: row.identity_kept_fingerprint,
    identityKeptInstance: row.identity_kept_instance,
    identitySuccessorsAllowed: row.identity_successors_allowed,
    identityResolvedAt: row.identity_resolved_at,
    identityRotationNonceSha256: row.identity_rotation_nonce_sha256,
    previousPublicKey: row.previous_public_key,
    keyRotatedAt: row.key_rotated_at,
    replaces: row.replaces,
    replacedBy: row.replaced_by,
  };
}
