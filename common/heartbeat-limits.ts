/**
 * Limits of one Heartbeat stream, shared by the appliance (which enforces them) and the agent
 * (which must stay inside them). docs/operations.md, "Limits", lists them.
 */

/** Task reports one HeartbeatRequest may carry; a message with more is refused whole (ERR_INVALID_ARGUMENT). */
export const MAX_TASK_UPDATES_PER_HEARTBEAT = 64;

/**
 * Messages a host may send on its Heartbeat streams (each stream opened counts as one): a burst,
 * then this many a second. An agent beats once per interval (5 s at least) plus once per task
 * phase change, far below; beyond it the stream ends with ERR_STREAM_RATE_LIMITED.
 */
export const HEARTBEAT_RATE_LIMIT = { burst: 30, perSecond: 1 } as const;
