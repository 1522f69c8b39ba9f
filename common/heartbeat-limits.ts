/**
 * Limits of one Heartbeat stream, shared by the appliance (which enforces them) and the agent
 * (which must stay inside them). docs/operations.md, "Limits", lists them.
 */

/** Addresses a HostFacts message may list; the agent sends its first ones (sorted), the appliance stores no more. */
export const MAX_HOST_IP_ADDRESSES = 16;

/** Task reports one HeartbeatRequest may carry; a message with more is refused whole (ERR_INVALID_ARGUMENT). */
export const MAX_TASK_UPDATES_PER_HEARTBEAT = 64;

/**
 * The largest encoded HeartbeatRequest the appliance accepts (bytes); a larger one ends the stream
 * with ERR_MESSAGE_TOO_LARGE before it is decoded. An honest heartbeat is its vitals (well under
 * 1 KiB) plus its task reports; the agent keeps those under MAX_TASK_UPDATE_BYTES_PER_HEARTBEAT.
 * 64 reports of 16 KiB output (agent/tasks/runner.ts MESSAGE_LIMIT_CHARS) are about 1 MiB, so the
 * agent splits such a batch over two heartbeats rather than the appliance taking 4 MiB.
 */
export const MAX_HEARTBEAT_REQUEST_BYTES = 1024 * 1024;

/** The task report text (bytes, counted by the agent) one heartbeat carries at most: the bound less room for the rest. */
export const MAX_TASK_UPDATE_BYTES_PER_HEARTBEAT = MAX_HEARTBEAT_REQUEST_BYTES - 64 * 1024;

/**
 * Messages a host may send on its Heartbeat streams (each stream opened counts as one): a burst,
 * then this many a second. An agent beats once per interval (5 s at least) plus once per task
 * phase change, far below; beyond it the stream ends with ERR_STREAM_RATE_LIMITED.
 */
export const HEARTBEAT_RATE_LIMIT = { burst: 30, perSecond: 1 } as const;
