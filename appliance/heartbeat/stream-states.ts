/**
 * The lifecycle of one Heartbeat stream on the appliance as a pure transition table, like the
 * task lifecycle (tasks/states.ts). The handler (grpc/heartbeat-handler.ts) turns what happens on
 * the call into events, steps the table, and runs the effects of the state it enters; nothing
 * else decides whether the stream may read, send, or must end.
 *
 * - opening: the call arrived; its JWT, its host's open calls and rate, and its host are checked.
 * - awaiting-claim: admitted, but nothing is sent until the first heartbeat said which machine is
 *   behind the stream and the claim was judged (hosts/identity.ts), so no task reaches a machine
 *   that may yet be refused.
 * - streaming: the claim was accepted; heartbeats are acknowledged, and tasks, credentials, trust
 *   bundles and key rotations go out.
 * - reporting: a report-only stream (the uninstaller's report-task): acknowledges reports and
 *   sends nothing else, for at most a minute.
 * - draining: the stream is ending: nothing more is read; the heartbeat in hand is still
 *   acknowledged (a report that deleted the host is acknowledged first), then the status goes out.
 * - closed: the status was sent or the call is gone; every timer and subscription is released.
 */
export const STREAM_STATES = ['opening', 'awaiting-claim', 'streaming', 'reporting', 'draining', 'closed'] as const;
export type StreamState = (typeof STREAM_STATES)[number];

/**
 * - admitted / admitted-report-only: the JWT, the open rate and the host (hosts/status.ts mayStream) passed.
 * - claim-accepted: the first heartbeat's claim of the host's identity was accepted.
 * - heartbeat: a heartbeat within the rate arrived (handled only where the state allows).
 * - refused: what the peer sent was refused (invalid, over its rate, its host may no longer stream,
 *   its claim refused, its reports not stored).
 * - revoked: an admin revoked, rejected or deleted the host (presence.disconnect).
 * - replaced: a newer stream of the host became its current one (presence.attach).
 * - deadline: a silent stream's limit passed (the first heartbeat's, a report stream's minute, presence's 2 × interval).
 * - server-stopping: the appliance stops (presence.closeAll).
 * - peer-ended: the peer half-closed the call.
 * - answered: the heartbeat in hand while draining was answered (or none was in hand).
 * - peer-cancelled: the call is gone (cancelled, reset, connection lost); no status can be sent.
 * - write-stalled: a write was not accepted within the drain deadline (grpc/stream-writer.ts), or
 *   found the call gone; the writer already ended the call.
 */
export const STREAM_EVENTS = [
  'admitted', 'admitted-report-only', 'claim-accepted', 'heartbeat', 'refused', 'revoked', 'replaced', 'deadline', 'server-stopping', 'peer-ended', 'answered', 'peer-cancelled', 'write-stalled',
] as const;
export type StreamEvent = (typeof STREAM_EVENTS)[number];

/** The events that end a live stream with a status, after the heartbeat in hand is answered. */
const ENDING = ['refused', 'revoked', 'replaced', 'deadline', 'server-stopping', 'peer-ended'] as const satisfies readonly StreamEvent[];
/** The events after which nothing more can be written. */
const GONE = ['peer-cancelled', 'write-stalled'] as const satisfies readonly StreamEvent[];

type Moves = Partial<Record<StreamEvent, StreamState>>;
const ends = (target: StreamState): Moves => Object.fromEntries(ENDING.map((event) => [event, target]));
const gone: Moves = Object.fromEntries(GONE.map((event) => [event, 'closed']));

const STREAM_TRANSITIONS: Readonly<Record<StreamState, Readonly<Moves>>> = {
  // Refused at open: nothing was read yet, so the status goes out at once.
  opening: { 'admitted': 'awaiting-claim', 'admitted-report-only': 'reporting', ...ends('closed'), ...gone },
  'awaiting-claim': { 'heartbeat': 'awaiting-claim', 'claim-accepted': 'streaming', ...ends('draining'), ...gone },
  streaming: { heartbeat: 'streaming', ...ends('draining'), ...gone },
  reporting: { heartbeat: 'reporting', ...ends('draining'), ...gone },
  draining: { answered: 'closed', ...gone },
  closed: {},
};

/** The state `event` moves a stream in `state` to, or undefined when the event does not apply there. */
export function nextStreamState(state: StreamState, event: StreamEvent): StreamState | undefined {
  return STREAM_TRANSITIONS[state][event];
}

/** Whether a stream in `state` reads and handles heartbeats (awaiting its claim, streaming, reporting). */
export function mayRead(state: StreamState): boolean {
  return nextStreamState(state, 'heartbeat') !== undefined;
}

/** Whether a stream in `state` may write to its peer now (draining: only the answer to the heartbeat in hand). */
export function maySend(state: StreamState): boolean {
  return state === 'streaming';
}
