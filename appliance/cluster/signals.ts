import { isErrorCode, type ErrorCode } from '../../common/errors.ts';
import { idPattern } from '../../common/ids.ts';

/**
 * What one instance tells the others after a commit (decisions.md 110): each names a host, and
 * only the instance holding that host's stream acts on it.
 * - tasks-queued: a task was queued for the host; send the queue (TaskService.dispatch).
 * - task-cancelled: an admin cancelled a task the agent was sent; tell the agent to stop it.
 * - host-closed: the host may no longer stream (revoked, deleted, replaced, key retired); close
 *   its stream with `code`/`message`, as presence.disconnect does locally.
 * - stream-claimed: another instance now holds the host's current stream (its claim accepted); a
 *   stream here is an older one and ends as replaced, without the host going offline. The claiming
 *   agent process (HostFacts.instance_id), when it said, joins each instance's claim history.
 */
export type ClusterSignal =
  | { readonly kind: 'tasks-queued'; readonly hostId: string }
  | { readonly kind: 'task-cancelled'; readonly hostId: string; readonly taskId: string }
  | { readonly kind: 'host-closed'; readonly hostId: string; readonly code: ErrorCode; readonly message: string }
  | { readonly kind: 'stream-claimed'; readonly hostId: string; readonly agentInstanceId?: string };

/** A signal as NOTIFYed: the sending instance's id beside it, so an instance skips its own (it acted before sending). */
export interface SignalEnvelope {
  readonly from: string;
  readonly signal: ClusterSignal;
}

/** The longest `message` of a host-closed signal carried, in characters: NOTIFY payloads end at 8000 bytes. */
const MAX_MESSAGE_CHARS = 1_000;

const INSTANCE_ID = idPattern('ins');
/** Host and task ids are keys looked up, never shown or parsed: any short string passes (hosts enrolled before ids.ts had other forms). */
const isKey = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= 128;

/** The NOTIFY payload of `signal` from instance `from`. */
export function encodeSignal(from: string, signal: ClusterSignal): string {
  const bounded = signal.kind === 'host-closed' ? { ...signal, message: signal.message.slice(0, MAX_MESSAGE_CHARS) } : signal;
  return JSON.stringify({ from, signal: bounded });
}

/**
 * The envelope a payload carries, or undefined for one that is not a signal of this version (a
 * newer instance's kind during a rolling upgrade, or anything else NOTIFYed on the channel): such
 * a payload is skipped, never trusted.
 */
export function parseSignal(payload: string): SignalEnvelope | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { from, signal } = value as { from?: unknown; signal?: unknown };
  if (typeof from !== 'string' || !INSTANCE_ID.test(from) || typeof signal !== 'object' || signal === null) return undefined;
  const fields = signal as Record<string, unknown>;
  const hostId = fields.hostId;
  if (!isKey(hostId)) return undefined;
  switch (fields.kind) {
    case 'tasks-queued':
      return { from, signal: { kind: 'tasks-queued', hostId } };
    case 'stream-claimed':
      if (fields.agentInstanceId === undefined) return { from, signal: { kind: 'stream-claimed', hostId } };
      return isKey(fields.agentInstanceId) ? { from, signal: { kind: 'stream-claimed', hostId, agentInstanceId: fields.agentInstanceId } } : undefined;
    case 'task-cancelled':
      return isKey(fields.taskId) ? { from, signal: { kind: 'task-cancelled', hostId, taskId: fields.taskId } } : undefined;
    case 'host-closed':
      return isErrorCode(fields.code) && typeof fields.message === 'string' && fields.message.length <= MAX_MESSAGE_CHARS
        ? { from, signal: { kind: 'host-closed', hostId, code: fields.code, message: fields.message } }
        : undefined;
    default:
      return undefined;
  }
}
