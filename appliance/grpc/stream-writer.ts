import type * as grpc from '@grpc/grpc-js';
import { CtOpsError } from '../../common/errors.ts';
import { toServiceError } from './status.ts';

/**
 * How long (ms) one write may wait for the peer to read before its stream is ended as a slow
 * consumer (ERR_STREAM_SLOW_CONSUMER). What waits is at most one HTTP/2 window (64 KiB) and
 * grpc-js's 16 buffered messages; an agent that reads drains that in well under a second even on
 * a slow link, so 15 s only catches a peer that stopped reading — and stays under the default
 * heartbeat interval (30 s), so such a stream is gone before presence would judge it silent.
 */
export const STREAM_DRAIN_DEADLINE_MS = 15_000;

/** A grpc-js server stream we write to: a server-streaming or a bidirectional call. */
type ServerStreamCall<Message> = grpc.ServerWritableStream<unknown, Message> | grpc.ServerDuplexStream<unknown, Message>;

/**
 * Writes `message` to `call` and resolves once the write was accepted: at once when `call.write`
 * returned true, otherwise when the call drained ('drain') or flushed everything after being
 * ended ('finish'). `call.write` returning anything at all is not acceptance: false means the
 * message sits in the call's buffer because the peer is not reading.
 *
 * Rejects with ERR_STREAM_CLOSED when the call ended (cancelled by the peer, its connection lost,
 * or its status already sent) before the write was accepted: the message may never reach the peer.
 * Rejects with ERR_STREAM_SLOW_CONSUMER when the write was not accepted within `drainDeadlineMs`
 * (STREAM_DRAIN_DEADLINE_MS): the call is then ended with that status (RESOURCE_EXHAUSTED), which
 * the peer receives after what it has not read yet. Callers write one message at a time (await
 * each), so what a peer that does not read costs us is bounded by one buffer.
 */
export function writeWithBackpressure<Message>(call: ServerStreamCall<Message>, message: Message, drainDeadlineMs = STREAM_DRAIN_DEADLINE_MS): Promise<void> {
  if (call.cancelled || call.writableEnded || call.destroyed) return Promise.reject(streamClosed());
  if (call.write(message)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const settle = (error?: CtOpsError): void => {
      clearTimeout(deadline);
      call.off('drain', accepted);
      call.off('finish', accepted);
      call.off('cancelled', gone);
      call.off('close', gone);
      if (error) reject(error);
      else resolve();
    };
    const accepted = (): void => settle();
    const gone = (): void => settle(streamClosed());
    const deadline = setTimeout(() => {
      const slow = new CtOpsError('ERR_STREAM_SLOW_CONSUMER', `the peer did not read what the appliance sent within ${drainDeadlineMs / 1000} s; the stream was ended`, { drain_deadline_ms: drainDeadlineMs });
      settle(slow);
      // grpc-js ends the call with this status once the peer reads what is buffered before it.
      call.emit('error', toServiceError(slow));
    }, drainDeadlineMs);
    call.once('drain', accepted);
    call.once('finish', accepted);
    call.once('cancelled', gone);
    call.once('close', gone);
  });
}

function streamClosed(): CtOpsError {
  return new CtOpsError('ERR_STREAM_CLOSED', 'the stream ended before the message written to it was accepted');
}
