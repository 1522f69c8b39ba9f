import * as grpc from '@grpc/grpc-js';
import { loadIngestProto, REPORT_ONLY_METADATA, type HeartbeatResponse__Output, type SoftwareInventoryResponse__Output } from '../../common/proto.ts';
import { RETRY_FLOOR_MS } from '../lifecycle/backoff.ts';
import type { IngestAddresses } from './addresses.ts';
import { rpcFailure } from './failure.ts';
import type { ChallengeResult, HeartbeatCall, HeartbeatHandlers, IngestTransport, RegisterResult, SubmitResult, UnaryResult } from './types.ts';

/** A Register that has not answered in this long is retried rather than waited on. */
const REGISTER_DEADLINE_MS = 20_000;
/** A scan of tens of thousands of packages is a few MiB: minutes is generous even on a slow link. */
const SUBMIT_DEADLINE_MS = 5 * 60_000;

/**
 * grpc-js's own reconnect delay (ms) after a failed connection attempt. grpc-js draws each delay
 * within ±20 % of this (backoff-timeout.js), so 0.8 × RETRY_FLOOR_MS keeps every draw under the
 * agent's shortest wait: when the agent's backoff (agent/lifecycle/backoff.ts) ends, the channel
 * has already left TRANSIENT_FAILURE — where calls without waitForReady fail at once — and the
 * call opens a connection. grpc-js's default (1 s × 1.6ⁿ up to 120 s) would fail those calls
 * until its own timer ended and bring agents that lost the appliance together back together,
 * whatever their own waits (issue 9 §2).
 */
export const CHANNEL_RECONNECT_BACKOFF_MS = Math.floor(RETRY_FLOOR_MS * 0.8);

/**
 * Keepalive pings notice a dead connection (half-open TCP) even while the agent is
 * only waiting between heartbeats. One channel for as long as the trusted CAs stay the same (a
 * new one only when a trust bundle changes them, createGrpcTransport): a closed grpc-js channel
 * whose subchannel was waiting to reconnect still makes that one attempt, and a connection it
 * opens is kept (decisions.md 36).
 */
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': CHANNEL_RECONNECT_BACKOFF_MS,
  'grpc.max_reconnect_backoff_ms': CHANNEL_RECONNECT_BACKOFF_MS,
};

/**
 * `addresses` says which ingest address a new call goes to (the agent moves it on a transport
 * failure); `roots` gives the PEM CAs to trust now (agent/identity/trust.ts; undefined: the system
 * roots), the same for every address. When either changes (a failover; a trust bundle arrived) the
 * next call opens a new channel; calls already open on the old one, the Heartbeat stream among them,
 * go on over their verified connection.
 */
export function createGrpcTransport(addresses: IngestAddresses, roots: () => string | undefined): IngestTransport {
  const { IngestService } = loadIngestProto().ctops.ingest.v1;
  // null trusts the system roots (ca_cert_file empty); certificate and hostname are always verified.
  const connect = (target: string, caPem: string | undefined) => new IngestService(target, grpc.credentials.createSsl(caPem === undefined ? null : Buffer.from(caPem)), CHANNEL_OPTIONS);
  let target = addresses.current.target;
  let trusted = roots();
  let channel = connect(target, trusted);
  /**
   * The channel for a new call: a new one only on a failover or when the trusted CAs changed (rare: a CA
   * rotation), per decisions.md 36. The old one is closed, not kept per address: kept, it would go on
   * reconnecting to a dead instance every CHANNEL_RECONNECT_BACKOFF_MS (decisions.md 120).
   */
  const current = () => {
    const wantedTarget = addresses.current.target;
    const wanted = roots();
    if (wanted !== trusted || wantedTarget !== target) {
      channel.close();
      trusted = wanted;
      target = wantedTarget;
      channel = connect(target, trusted);
    }
    return channel;
  };

  return {
    getRegisterChallenge() {
      return new Promise<ChallengeResult>((resolve) => current().GetRegisterChallenge({}, { deadline: Date.now() + REGISTER_DEADLINE_MS }, settle(resolve)));
    },

    register(request) {
      return new Promise<RegisterResult>((resolve) => current().Register(request, { deadline: Date.now() + REGISTER_DEADLINE_MS }, settle(resolve)));
    },

    openHeartbeat(jwt: string, handlers: HeartbeatHandlers, options: { reportOnly?: boolean } = {}): HeartbeatCall {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${jwt}`);
      if (options.reportOnly) metadata.set(REPORT_ONLY_METADATA, '1');
      const call = current().Heartbeat(metadata);
      let ended = false;
      call.on('data', (message: HeartbeatResponse__Output) => {
        if (!ended) handlers.onMessage(message);
      });
      // The status event always follows an error; it alone reports the end.
      call.on('error', () => undefined);
      call.on('status', (status: grpc.StatusObject) => {
        if (ended) return;
        ended = true;
        handlers.onEnd(rpcFailure(status));
      });
      return {
        send(request) {
          if (!ended && call.writable) call.write(request);
        },
        close() {
          if (call.writable) call.end();
          call.cancel();
        },
      };
    },

    submitInventory(jwt, chunks, signal) {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${jwt}`);
      return new Promise<SubmitResult>((resolve) => {
        const call = current().SubmitSoftwareInventory(metadata, { deadline: Date.now() + SUBMIT_DEADLINE_MS }, (error: grpc.ServiceError | null, response?: SoftwareInventoryResponse__Output) => {
          signal.removeEventListener('abort', cancel);
          if (error || !response) resolve({ ok: false, failure: rpcFailure(error ?? { code: grpc.status.INTERNAL, details: 'empty response' }) });
          else resolve({ ok: true, response });
        });
        const cancel = (): void => call.cancel();
        signal.addEventListener('abort', cancel, { once: true });
        // Flow control: wait for 'drain' when the stream's buffer is full rather than queueing every chunk.
        const writeFrom = (index: number): void => {
          for (let next = index; next < chunks.length; next += 1) {
            if (!call.write(chunks[next]) && next + 1 < chunks.length) {
              call.once('drain', () => writeFrom(next + 1));
              return;
            }
          }
          call.end();
        };
        writeFrom(0);
      });
    },

    close() {
      channel.close();
    },
  };
}

/** A unary call's callback that resolves with its response, or the failure (an empty response is one). */
function settle<Response>(resolve: (result: UnaryResult<Response>) => void): (error: grpc.ServiceError | null, response?: Response) => void {
  return (error, response) => {
    if (error || !response) resolve({ ok: false, failure: rpcFailure(error ?? { code: grpc.status.INTERNAL, details: 'empty response' }) });
    else resolve({ ok: true, response });
  };
}
