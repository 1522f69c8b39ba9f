import type { ColumnType, Generated } from 'kysely';
import type { AdminRole, TokenScope } from '../model/admin.ts';
import type { AuditActorKind, AuditOutcome } from '../model/audit.ts';
import type { BundleTokenMode } from '../model/bundle.ts';
import type { RolloutState, UpdatePhase } from '../model/rollout.ts';

/**
 * The appliance's tables as Kysely sees them, the same on every backend (SQLite migrations in
 * store/migrations/, PostgreSQL's in store/migrations/postgres/). Column types are what both drivers
 * return once the backend is opened by store/dialects.ts: times are integer milliseconds since the
 * epoch (PostgreSQL BIGINT parsed to number), flags are 0/1 integers, keys and nonces are Buffers,
 * JSON columns are TEXT holding JSON. A column with a default is Generated (optional on insert).
 */
export interface Schema {
  organisations: OrganisationsTable;
  org_settings: OrgSettingsTable;
  enrolment_tokens: EnrolmentTokensTable;
  hosts: HostsTable;
  host_vitals: HostVitalsTable;
  register_nonces: RegisterNoncesTable;
  register_nonce_watermark: RegisterNonceWatermarkTable;
  admin_users: AdminUsersTable;
  admin_api_tokens: AdminApiTokensTable;
  software_scans: SoftwareScansTable;
  software_packages: SoftwarePackagesTable;
  software_name_index: SoftwareNameIndexTable;
  /** The package id ranges each chunk inserted for its host since the name index last took them (migration 016). */
  software_name_pending_ranges: SoftwareNamePendingRangesTable;
  /** A view: each host's newest completed scan. */
  host_last_inventory: HostLastInventoryView;
  tasks: TasksTable;
  host_claimants: HostClaimantsTable;
  host_events: HostEventsTable;
  /** Admin actions and security events (migration 023). */
  audit_events: AuditEventsTable;
  appliance_instances: ApplianceInstancesTable;
  host_streams: HostStreamsTable;
  /** Imported agent releases (migration 018). */
  agent_releases: AgentReleasesTable;
  release_minimums: ReleaseMinimumsTable;
  /** Agent update rollouts, their groups, each host's latest update and the versions blocked per host (migration 019). */
  rollouts: RolloutsTable;
  rollout_groups: RolloutGroupsTable;
  host_updates: HostUpdatesTable;
  update_blocks: UpdateBlocksTable;
  /** The install bundles built (migration 026). */
  install_bundles: InstallBundlesTable;
}

/** A flag stored as 0 or 1 (SQLite has no boolean; PostgreSQL uses SMALLINT with the same CHECK). */
export type Flag = 0 | 1;

export interface OrganisationsTable {
  id: string;
  name: string;
  created_at: number;
}

export interface OrgSettingsTable {
  org_id: string;
  key: string;
  value: string;
}

export interface EnrolmentTokensTable {
  id: string;
  org_id: string;
  secret_hash: string;
  label: string;
  created_at: number;
  created_by: string;
  expires_at: number;
  max_uses: number;
  uses: Generated<number>;
  auto_approve: Flag;
  /** JSON object of tag → value. */
  tags: string;
  source: string;
  /** JSON object. */
  metadata: string;
  revoked_at: number | null;
}

export type Approval = 'pending' | 'active' | 'rejected' | 'revoked';

export interface HostsTable {
  id: string;
  org_id: string;
  /** Ed25519 public key, 32 bytes. */
  public_key: Buffer;
  hostname: string;
  machine_fingerprint: string;
  os: string;
  arch: string;
  agent_version: string;
  approval: Approval;
  enrolment_token_id: string | null;
  /** JSON object of tag → value. */
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
  os_version: Generated<string>;
  /** JSON array of strings. */
  ip_addresses: Generated<string>;
  identity_state: 'conflict' | 'resolved' | null;
  identity_kept_fingerprint: string | null;
  identity_kept_instance: string | null;
  identity_successors_allowed: Generated<number>;
  replaces: string | null;
  replaced_by: string | null;
  clock_offset_ms: number | null;
  identity_resolved_at: number | null;
  identity_rotation_nonce_sha256: Buffer | null;
  previous_public_key: Buffer | null;
  key_rotated_at: number | null;
  trust_generation: Generated<number>;
  trust_digest: Generated<string>;
  /** The install bundle the agent claimed at enrolment (migration 026); null when it named none. */
  install_bundle_id: Generated<string | null>;
}

export interface HostVitalsTable {
  host_id: string;
  received_at: number;
  agent_timestamp: number;
  cpu_percent: number;
  memory_percent: number;
  disk_percent: number;
  uptime_seconds: number;
}

export interface RegisterNoncesTable {
  public_key: Buffer;
  nonce: Buffer;
  expires_at: number;
}

export interface RegisterNonceWatermarkTable {
  id: number;
  pruned_through: number;
}

export interface AdminUsersTable {
  id: string;
  username: string;
  password_hash: string;
  created_at: number;
  role: Generated<AdminRole>;
  disabled_at: Generated<number | null>;
  must_change_password: Generated<0 | 1>;
}

export interface AdminApiTokensTable {
  id: string;
  user_id: string;
  secret_hash: string;
  label: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: Generated<number | null>;
  scope: Generated<TokenScope>;
  description: Generated<string>;
}

export type ScanStatus = 'receiving' | 'completed' | 'failed' | 'abandoned';

export interface SoftwareScansTable {
  /** Insertion order; the per-host cap on scans goes by it. */
  seq: Generated<number>;
  id: string;
  host_id: string;
  task_id: string;
  started_at: number;
  updated_at: number;
  completed_at: number | null;
  status: ScanStatus;
  chunks: Generated<number>;
  packages_received: Generated<number>;
  added: Generated<number>;
  removed: Generated<number>;
  unchanged: Generated<number>;
  error_code: string | null;
  /** JSON array of skipped-record notes. */
  skipped: Generated<string>;
}

export interface SoftwarePackagesTable {
  id: Generated<number>;
  host_id: string;
  name: string;
  version: string;
  source: string;
  architecture: string;
  publisher: string;
  install_date: number | null;
  first_seen: number;
  last_seen: number;
  last_seen_scan: number;
  prior_scan: number | null;
  is_removed: Generated<Flag>;
  removed_at: number | null;
}

export interface SoftwareNameIndexTable {
  name: string;
  host_id: string;
}

export interface SoftwareNamePendingRangesTable {
  host_id: string;
  first_id: number;
  last_id: number;
}

export interface HostLastInventoryView {
  host_id: ColumnType<string, never, never>;
  last_inventory_at: ColumnType<number, never, never>;
}

export type TaskType = 'software_inventory' | 'agent_uninstall' | 'config_reload';
export type TaskState = 'queued' | 'sent' | 'acknowledged' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out';

export interface TasksTable {
  id: string;
  org_id: string;
  host_id: string;
  type: TaskType;
  state: TaskState;
  /** JSON object. */
  payload: Generated<string>;
  result: string | null;
  output: string | null;
  error_code: string | null;
  created_at: number;
  created_by: string;
  sent_at: number | null;
  acknowledged_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  timeout_ms: number;
  deadline_at: number | null;
  expires_at: number;
  attempts: Generated<number>;
}

export interface HostClaimantsTable {
  host_id: string;
  instance_id: string;
  machine_fingerprint: string;
  hostname: string;
  source: string;
  first_seen: number;
  last_seen: number;
}

export interface HostEventsTable {
  id: Generated<number>;
  host_id: string;
  at: number;
  kind: string;
  /** JSON object. */
  details: string;
}

export interface AuditEventsTable {
  id: Generated<number>;
  org_id: string;
  at: number;
  actor: string;
  actor_kind: AuditActorKind;
  source: string;
  action: string;
  /** JSON object of the route's parameters. */
  target: string;
  outcome: AuditOutcome;
  error_code: string | null;
  status: number;
}

export interface ApplianceInstancesTable {
  id: string;
  started_at: number;
  /** ms since the epoch; the instance is alive while this is in the future. */
  lease_expires_at: number;
}

export interface HostStreamsTable {
  host_id: string;
  instance_id: string;
  connected_at: number;
  /** Random per stream: a release removes the row of its own stream only, never a newer one's. */
  stream_id: string;
  /** The claimant behind the stream (presence/registry.ts Claimant); '' each when its agent sent no HostFacts. */
  agent_instance_id: Generated<string>;
  machine_fingerprint: Generated<string>;
  hostname: Generated<string>;
  source: Generated<string>;
}

export interface AgentReleasesTable {
  /** MAJOR.MINOR.PATCH; the three columns after it are its numbers (a CHECK keeps them equal). */
  version: string;
  version_major: number;
  version_minor: number;
  version_patch: number;
  key_id: string;
  trusted_comment: string;
  /** JSON array of {name, sha256, size}, sorted by name. */
  files: string;
  imported_at: number;
  imported_by: string;
  retired_at: number | null;
}

export interface ReleaseMinimumsTable {
  org_id: string;
  /** agent_releases.version */
  version: string;
  set_at: number;
  set_by: string;
}

export interface RolloutsTable {
  id: string;
  org_id: string;
  /** agent_releases.version */
  version: string;
  state: RolloutState;
  halted_reason: string | null;
  created_at: number;
  created_by: string;
  updated_at: number;
}

export interface RolloutGroupsTable {
  rollout_id: string;
  /** 0-based start order. */
  position: number;
  name: string;
  /** JSON of a GroupSelector (model/rollout.ts). */
  selector: string;
  /** 1–100. */
  success_percent: number;
  started_at: number | null;
  /** Canonical text of a maintenance window (releases/maintenance-window.ts); null: any time. */
  maintenance_window: string | null;
}

export interface HostUpdatesTable {
  host_id: string;
  version: string;
  phase: UpdatePhase;
  error_code: string | null;
  detail: string | null;
  rollout_id: string | null;
  updated_at: number;
}

export interface UpdateBlocksTable {
  host_id: string;
  version: string;
  reason: string;
  blocked_at: number;
}

export interface InstallBundlesTable {
  id: string;
  org_id: string;
  created_at: number;
  created_by: string;
  os: string;
  arch: string;
  agent_version: string;
  /** JSON array of strings. */
  addresses: string;
  /** JSON object of tag → value. */
  tags: string;
  label: string;
  token_mode: BundleTokenMode;
  token_id: string | null;
  zip_file: string;
  zip_size: number;
  /** Lower-case hex SHA-256 of the zip. */
  zip_sha256: string;
  bundle_key_id: string;
  ca_fingerprint: string;
  withdrawn_at: number | null;
  withdrawn_by: string | null;
}
