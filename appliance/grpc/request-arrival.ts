import * as grpc from '@grpc/grpc-js';
import { CtOpsError } from '../../common/errors.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { IngestGuards } from './guards.ts';
import { toServiceError } from './status.ts';

/**
 * How long (ms) a unary call (Register, GetRegisterChallenge) may take to deliver its one request
 * message. grpc-js waits for it for ever: a call whose frame stopped short of its length prefix, or
 * that never sent one, was held as long as its connection answered pings (issue 14's fuzz), with
 * what it had sent buffered, and these calls need no credential. The agent gives up on a Register
 * after as long (agent/transport/grpc-transport.ts REGISTER_DEADLINE_MS); a few KiB take milliseconds.
 */
export const UNARY_ARRIVAL_MS = 20_000;
/**
 * How long (ms) a client-streaming call (SubmitSoftwareInventory) may take to deliver all its
 * messages, up to its half-close: the agent sends a collected scan at once and gives up after as
 * long itself (SUBMIT_DEADLINE_MS). Unbounded, a host could open an inventory stream a second (its
 * message rate allows that) and never end one.
 */
export const STREAM_ARRIVAL_MS = 5 * 60_000;

/**
 * A server interceptor that ends a call whose request has not fully arrived in time (unary: its
 * message within UNARY_ARRIVAL_MS; client-streaming: its half-close within STREAM_ARRIVAL_MS) with
 * ERR_INVALID_ARGUMENT (details.reason request_incomplete), logged as a refusal of its source. It
 * must be the innermost interceptor (first in the server's list), so it hears every message and
 * every status however the other interceptors answer; a call grpc-js ended itself is cancelled,
 * which stops the timer. Heartbeat streams are bounded by their handler (heartbeat-handler.ts: a
 * host's interval, the first-heartbeat deadline).
 */
export function boundRequestArrival(guards: Pick<IngestGuards, 'refusals'>): grpc.ServerInterceptor {
  return (method, call) => {
    // The call itself, not a pass-through layer: one per Heartbeat stream is held as long as the stream
    // (issue 14). grpc-js types an interceptor's result as its class but uses only its interface.
    if (method.requestStream && method.responseStream) return call as grpc.ServerInterceptingCall;
    const boundMs = method.requestStream ? STREAM_ARRIVAL_MS : UNARY_ARRIVAL_MS;
    let timer: NodeJS.Timeout | undefined;
    const arrived = (): void => clearTimeout(timer);
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        timer = setTimeout(() => {
          const what = method.path.slice(method.path.lastIndexOf('/') + 1).toLowerCase();
          const error = new CtOpsError('ERR_INVALID_ARGUMENT', `the request did not arrive within ${boundMs / 1000} s`, { reason: 'request_incomplete' });
          guards.refusals.refused({ peer: peerSource(call.getPeer()) }, error, what);
          intercepting.sendStatus(toServiceError(error));
        }, boundMs);
        next({
          onReceiveMessage: (message: unknown, pass) => {
            if (!method.requestStream) arrived();
            pass(message);
          },
          onReceiveHalfClose: (pass) => {
            arrived();
            pass();
          },
          // grpc-js tells the next listener of a cancellation itself.
          onCancel: arrived,
        });
      },
      sendStatus: (status, next) => {
        arrived();
        next(status);
      },
    });
    return intercepting;
  };
}
