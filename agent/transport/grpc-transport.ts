import * as grpc from '@grpc/grpc-js';
import { loadIngestProto, REPORT_ONLY_METADATA, type HeartbeatResponse__Output, type IngestServiceClient, type SoftwareInventoryResponse__Output } from '../../common/proto.ts';
import type { AgentConfig } from '../config/types.ts';
import { rpcFailure } from './failure.ts';
import type { ChallengeResult, HeartbeatCall, HeartbeatHandlers, IngestTransport, RegisterResult, SubmitResult, UnaryResult } from './types.ts';

/** A Register that has not answered in this long is retried rather than waited on. */
const REGISTER_DEADLINE_MS = 20_000;
/** A scan of tens of thousands of packages is a few MiB: minutes is generous even on a slow link. */
const SUBMIT_DEADLINE_MS = 5 * 60_000;

/**
 * Keepalive pings notice a dead connection (half-open TCP) even while the agent is
 * only waiting between heartbeats.
 */
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  // The channel's connection is its own, so replacing the channel (below) really drops it.
  'grpc.use_local_subchannel_pool': 1,
};

export function createGrpcTransport(ingest: AgentConfig['ingest']): IngestTransport {
  const { IngestService } = loadIngestProto().ctops.ingest.v1;
  // null trusts the system roots (ca_cert_file empty); certificate and hostname are always verified.
  const credentials = grpc.credentials.createSsl(ingest.caPem === undefined ? null : Buffer.from(ingest.caPem));
  const connect = (): IngestServiceClient => new IngestService(ingest.address.target, credentials, CHANNEL_OPTIONS);
  let client = connect();
  /**
   * After a call that could not reach the appliance (UNAVAILABLE), the next call starts on a
   * fresh channel. A grpc-js channel that lost its connection keeps reconnecting in the
   * background on its own schedule (1 s × 1.6ⁿ up to 120 s, ±20 %) and fails calls at once
   * until that timer ends: agents that lost the appliance together would come back on its
   * schedule, together, whatever the agent's own backoff (agent/lifecycle/backoff.ts), which
   * must be the only reconnect schedule (issue 9 §2). A late failure of a call on a channel
   * already replaced changes nothing.
   */
  const afterFailure = (used: IngestServiceClient, code: number): void => {
    if (code !== grpc.status.UNAVAILABLE || used !== client) return;
    client.close();
    client = connect();
  };

  return {
    getRegisterChallenge() {
      const used = client;
      return new Promise<ChallengeResult>((resolve) => used.GetRegisterChallenge({}, { deadline: Date.now() + REGISTER_DEADLINE_MS }, settle(resolve, (code) => afterFailure(used, code))));
    },

    register(request) {
      const used = client;
      return new Promise<RegisterResult>((resolve) => used.Register(request, { deadline: Date.now() + REGISTER_DEADLINE_MS }, settle(resolve, (code) => afterFailure(used, code))));
    },

    openHeartbeat(jwt: string, handlers: HeartbeatHandlers, options: { reportOnly?: boolean } = {}): HeartbeatCall {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${jwt}`);
      if (options.reportOnly) metadata.set(REPORT_ONLY_METADATA, '1');
      const used = client;
      const call = used.Heartbeat(metadata);
      let ended = false;
      call.on('data', (message: HeartbeatResponse__Output) => {
        if (!ended) handlers.onMessage(message);
      });
      // The status event always follows an error; it alone reports the end.
      call.on('error', () => undefined);
      call.on('status', (status: grpc.StatusObject) => {
        if (ended) return;
        ended = true;
        afterFailure(used, status.code);
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
      const used = client;
      return new Promise<SubmitResult>((resolve) => {
        const call = used.SubmitSoftwareInventory(metadata, { deadline: Date.now() + SUBMIT_DEADLINE_MS }, (error: grpc.ServiceError | null, response?: SoftwareInventoryResponse__Output) => {
          signal.removeEventListener('abort', cancel);
          if (error) afterFailure(used, error.code);
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
      client.close();
    },
  };
}

/** A unary call's callback that resolves with its response, or the failure (an empty response is one). */
function settle<Response>(resolve: (result: UnaryResult<Response>) => void, onError: (code: grpc.status) => void): (error: grpc.ServiceError | null, response?: Response) => void {
  return (error, response) => {
    if (error) onError(error.code);
    if (error || !response) resolve({ ok: false, failure: rpcFailure(error ?? { code: grpc.status.INTERNAL, details: 'empty response' }) });
    else resolve({ ok: true, response });
  };
}
