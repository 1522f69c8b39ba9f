import type { Db } from './database.ts';
import type { Tags } from './enrolment-tokens.ts';

/** What an admin decided about a host. Connectivity (online/offline) is not stored here. */
export type Approval = 'pending' | 'active' | 'rejected' | 'revoked';

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
  }

  get(id: string): Host | undefined {
    const row = this.#get.get(id);
    return row && toHost(row);
  }

  findByPublicKey(publicKey: Buffer): Host | undefined {
    const row = this.#byPublicKey.get(publicKey);
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
  };
}
