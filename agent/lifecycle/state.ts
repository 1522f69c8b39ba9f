import type { CtOpsError } from '../../common/errors.ts';

/** Named after what the agent needs next. */
export type LifecycleState =
  | 'needs-identity'
  | 'needs-registration'
  | 'awaiting-approval'
  | 'connecting'
  | 'streaming'
  | 'backing-off'
  | 'stopped';

export type StopReason =
  | { readonly kind: 'signal'; readonly signal: string }
  | { readonly kind: 'fatal'; readonly error: CtOpsError };

/** The facts the state is computed from. Event handlers change these, then step. */
export interface LifecycleInputs {
  readonly stop: StopReason | undefined;
  readonly identity: 'absent' | 'loaded';
  /** 'usable': a JWT the appliance issued and has not refused (the agent never judges its expiry by its own clock). */
  readonly credential: 'none' | 'usable';
  /** Set while the appliance holds the host pending: wait this long, then ask again. */
  readonly approvalPollMs: number | undefined;
  /** Set after a failure: wait this long (the backoff schedule), then try again. */
  readonly retryInMs: number | undefined;
  /** 'acknowledged' once the current Heartbeat stream delivered an ack. */
  readonly stream: 'none' | 'acknowledged';
}

export const INITIAL_INPUTS: LifecycleInputs = {
  stop: undefined,
  identity: 'absent',
  credential: 'none',
  approvalPollMs: undefined,
  retryInMs: undefined,
  stream: 'none',
};

/** Pure: the state the agent should be in, given the facts. */
export function nextState(inputs: LifecycleInputs): LifecycleState {
  if (inputs.stop !== undefined) return 'stopped';
  if (inputs.identity === 'absent') return 'needs-identity';
  if (inputs.retryInMs !== undefined) return 'backing-off';
  if (inputs.approvalPollMs !== undefined) return 'awaiting-approval';
  if (inputs.credential === 'none') return 'needs-registration';
  if (inputs.stream === 'acknowledged') return 'streaming';
  return 'connecting';
}
