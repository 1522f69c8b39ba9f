/*
 * Agent self-update rollouts and each host's update as workflows see them, whatever backend stores
 * them (appliance/store/rollouts.ts and host-updates.ts map rows to these).
 */

/**
 * running: groups start in order as the previous one meets its threshold; paused: nothing new is
 * offered until resumed; halted: a host of the rollout rolled back (halt-on-error), nothing new is
 * offered until an admin resumes; completed: every group met its threshold; superseded: a newer
 * rollout replaced it. The last two are final.
 */
export type RolloutState = 'running' | 'paused' | 'halted' | 'completed' | 'superseded';

/** The rollout states that still offer or may offer again (at most one such rollout per organisation). */
export const OPEN_ROLLOUT_STATES: readonly RolloutState[] = ['running', 'paused', 'halted'];

/** Which hosts a group holds: every host, the hosts with one tag value, or hosts by id. */
export type GroupSelector =
  | { readonly kind: 'all' }
  | { readonly kind: 'tag'; readonly key: string; readonly value: string }
  | { readonly kind: 'hosts'; readonly hostIds: readonly string[] };

export interface RolloutGroup {
  /** 0-based; groups start in this order. */
  readonly position: number;
  readonly name: string;
  readonly selector: GroupSelector;
  /** Percent (1–100) of the group's hosts that must be updated and healthy before the next group starts. */
  readonly successPercent: number;
  /** ms since the epoch; null until the group is offered the release. */
  readonly startedAt: number | null;
  /** The weekly hours its hosts are offered the release, as canonical text (releases/maintenance-window.ts); null: any time. */
  readonly maintenanceWindow: string | null;
}

export interface Rollout {
  /** rol_… (common/ids.ts) */
  readonly id: string;
  readonly orgId: string;
  /** The agent release version offered (agent_releases.version). */
  readonly version: string;
  readonly state: RolloutState;
  /** Why it halted (the host and reason of the rollback); null unless halted. */
  readonly haltedReason: string | null;
  readonly createdAt: number;
  readonly createdBy: string;
  readonly updatedAt: number;
  /** In position order. */
  readonly groups: readonly RolloutGroup[];
}

/**
 * Where one host's update stands, as its agent reports it (offered: the appliance offered it and
 * heard nothing yet). healthy: the new version streamed and stayed up; rolled_back: the root helper
 * restored the previous binary; failed: the agent refused or could not complete the offer.
 */
export type UpdatePhase = 'offered' | 'downloading' | 'staged' | 'installed' | 'healthy' | 'rolled_back' | 'failed';

/** The latest update attempt of one host. */
export interface HostUpdate {
  readonly hostId: string;
  /** The version the attempt is for. */
  readonly version: string;
  readonly phase: UpdatePhase;
  /** Catalogue code (docs/errors.md) with failed and rolled_back; null otherwise. */
  readonly errorCode: string | null;
  /** The agent's explanation (agent text: escaped wherever shown); null when none. */
  readonly detail: string | null;
  /** The rollout that offered it; null when none did (a minimum-version offer). */
  readonly rolloutId: string | null;
  /** ms since the epoch */
  readonly updatedAt: number;
}
