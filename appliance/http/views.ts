import { isClockOffsetHigh } from '../../common/clock-offset.ts';
import { idPatternSource } from '../../common/ids.ts';
import { HOST_STATUSES, statusOfHost } from '../hosts/status.ts';
import { tokenState } from '../enrolment/tokens.ts';
import type { PresenceService } from '../presence/service.ts';
import type { EnrolmentToken, Host } from '../store/index.ts';

/** A Unix-milliseconds timestamp as the admin API shows every time: ISO-8601, or null. */
export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Route parameters naming one host by id. */
export const hostIdParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: idPatternSource('hst') } } } as const;

/** Hosts as the admin API shows them, online as every instance sees it (PresenceService.onlineAmong). */
export async function hostViews(hosts: readonly Host[], presence: PresenceService) {
  return hostViewsOnline(hosts, await presence.onlineAmong(hosts.map((host) => host.id)));
}

/** Hosts as the admin API shows them, `online` naming those online (read with the hosts: HostService.page). */
export function hostViewsOnline(hosts: readonly Host[], online: ReadonlySet<string>) {
  return hosts.map((host) => viewOf(host, online.has(host.id)));
}

/** A host as the admin API shows it. */
export async function hostView(host: Host, presence: PresenceService) {
  return viewOf(host, await presence.isOnline(host.id));
}

function viewOf(host: Host, online: boolean) {
  return {
    id: host.id,
    hostname: host.hostname,
    status: statusOfHost(host, online),
    approval: host.approval,
    os: host.os,
    arch: host.arch,
    agent_version: host.agentVersion,
    machine_fingerprint: host.machineFingerprint,
    fingerprint_conflict_with: host.fingerprintConflictWith,
    tags: host.tags,
    enrolment_token_id: host.enrolmentTokenId,
    enrolled_at: iso(host.enrolledAt),
    decided_at: iso(host.decidedAt),
    decided_by: host.decidedBy,
    last_registered_at: iso(host.lastRegisteredAt),
    last_heartbeat_at: iso(host.lastHeartbeatAt),
    last_disconnected_at: iso(host.lastDisconnectedAt),
    heartbeat_interval_secs: host.heartbeatIntervalSecs,
    cpu_percent: host.cpuPercent,
    memory_percent: host.memoryPercent,
    disk_percent: host.diskPercent,
    uptime_seconds: host.uptimeSeconds,
    deleted_at: iso(host.deletedAt),
    deleted_by: host.deletedBy,
    clock_offset_secs: host.clockOffsetMs === null ? null : Math.round(host.clockOffsetMs / 1000),
    clock_offset_warning: host.clockOffsetMs !== null && isClockOffsetHigh(host.clockOffsetMs),
    os_version: host.osVersion,
    ip_addresses: host.ipAddresses,
    identity_state: host.identityState,
    replaces: host.replaces,
    replaced_by: host.replacedBy,
    install_bundle_id: host.installBundleId,
  };
}

/** An enrolment token as the admin API shows it: never the secret or its hash. */
export function tokenView(token: EnrolmentToken, now: number) {
  return {
    id: token.id,
    label: token.label,
    state: tokenState(token, now),
    created_at: iso(token.createdAt),
    created_by: token.createdBy,
    expires_at: iso(token.expiresAt),
    max_uses: token.maxUses,
    uses: token.uses,
    auto_approve: token.autoApprove,
    tags: token.tags,
    source: token.source,
    metadata: token.metadata,
    revoked_at: iso(token.revokedAt),
  };
}

/** A paged listing's `limit` query parameter: 1 to 500, as text (the server does not coerce types). */
export const pageLimitSchema = { type: 'string', pattern: '^(500|[1-4][0-9]{2}|[1-9][0-9]?)$' } as const;
/** A paged listing's `offset` query parameter: 0 to 999,999,999, as text. */
export const pageOffsetSchema = { type: 'string', pattern: '^(0|[1-9][0-9]{0,8})$' } as const;

/** A response schema's string-or-null field. */
export const nullableString = { type: ['string', 'null'] } as const;
const nullableNumber = { type: ['number', 'null'] } as const;
/** A response schema's object of strings (tags, an audit event's target). */
export const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

export const hostSchema = {
  type: 'object',
  required: ['id', 'hostname', 'status', 'approval'],
  properties: {
    id: { type: 'string' },
    hostname: { type: 'string' },
    status: { type: 'string', enum: [...HOST_STATUSES] },
    approval: { type: 'string' },
    os: { type: 'string' },
    arch: { type: 'string' },
    agent_version: { type: 'string' },
    machine_fingerprint: { type: 'string' },
    fingerprint_conflict_with: nullableString,
    tags: stringMap,
    enrolment_token_id: nullableString,
    enrolled_at: nullableString,
    decided_at: nullableString,
    decided_by: nullableString,
    last_registered_at: nullableString,
    last_heartbeat_at: nullableString,
    last_disconnected_at: nullableString,
    heartbeat_interval_secs: nullableNumber,
    cpu_percent: nullableNumber,
    memory_percent: nullableNumber,
    disk_percent: nullableNumber,
    uptime_seconds: nullableNumber,
    deleted_at: nullableString,
    deleted_by: nullableString,
    clock_offset_secs: nullableNumber,
    clock_offset_warning: { type: 'boolean' },
    os_version: { type: 'string' },
    ip_addresses: { type: 'array', items: { type: 'string' } },
    identity_state: nullableString,
    replaces: nullableString,
    replaced_by: nullableString,
    /** The install bundle the agent claimed at enrolment (unsigned provenance); null when it named none. */
    install_bundle_id: nullableString,
  },
} as const;

export const tokenSchema = {
  type: 'object',
  required: ['id', 'label', 'state', 'expires_at', 'max_uses', 'uses'],
  properties: {
    id: { type: 'string' },
    label: { type: 'string' },
    state: { type: 'string', enum: ['active', 'expired', 'revoked', 'used-up'] },
    created_at: nullableString,
    created_by: { type: 'string' },
    expires_at: nullableString,
    max_uses: { type: 'integer' },
    uses: { type: 'integer' },
    auto_approve: { type: 'boolean' },
    tags: stringMap,
    source: { type: 'string' },
    metadata: stringMap,
    revoked_at: nullableString,
  },
} as const;
