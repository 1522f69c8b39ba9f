const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const TASK_TYPES = ['software_inventory', 'agent_uninstall', 'config_reload'] as const;
export type TaskType = (typeof TASK_TYPES)[number];

export interface TaskTypeLimits {
  /** How long after it is sent the task must finish. */
  readonly timeoutMs: number;
  /** How long the task may wait queued for its host to connect. */
  readonly queuedExpiryMs: number;
}

/**
 * Per type: an inventory of a large host takes minutes, and a stale one is worth little after a
 * day; an uninstall must eventually reach a host that is off for a long weekend; a config reload
 * is quick and pointless hours later (the agent re-reads its config on restart anyway).
 */
export const TASK_TYPE_LIMITS: Readonly<Record<TaskType, TaskTypeLimits>> = {
  software_inventory: { timeoutMs: 10 * MINUTE, queuedExpiryMs: 1 * DAY },
  agent_uninstall: { timeoutMs: 5 * MINUTE, queuedExpiryMs: 7 * DAY },
  config_reload: { timeoutMs: 1 * MINUTE, queuedExpiryMs: 1 * HOUR },
};

/** The most output text kept per task (UTF-8 bytes); the rest is cut. */
export const TASK_OUTPUT_LIMIT_BYTES = 64 * 1024;
