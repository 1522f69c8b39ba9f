import { createServer, type Server as NetServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { loadIngestProto } from '../../common/proto.ts';
import type { TlsMaterial } from '../pki/certificates.ts';
import { ConnectionGate, settleOnFirstCall } from './connection-gate.ts';
import { createIngestGuards } from './guards.ts';
import { heartbeatHandler, type HeartbeatDeps } from './heartbeat-handler.ts';
import { inventoryHandler, type InventoryDeps } from './inventory-handler.ts';
import { refuseMalformedRequests, withStrictRequests } from './malformed-requests.ts';
import { registerChallengeHandler, registerHandler, type RegisterDeps } from './register-handler.ts';
import { boundRequestArrival } from './request-arrival.ts';

/** The largest message the ingest service accepts: a 500-package inventory chunk is far below. */
export const MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Concurrent calls per connection: an agent needs two (heartbeat, inventory); more is a flood. */
export const MAX_CONCURRENT_STREAMS = 16;

export interface GrpcServer {
  port: number;
  /** Serves this certificate on new connections from now on; open ones keep theirs (`certs rotate-server`). */
  useCertificate(certPem: string, keyPem: string): void;
  /** Stops accepting calls, waits up to graceMs for calls to finish, then cancels the rest. */
  stop(graceMs: number): Promise<void>;
}

/** How long (ms) a connection may carry no call before the appliance closes it. */
const MAX_CONNECTION_IDLE_MS = 5 * 60_000;

/**
 * Connections the kernel completes and queues while the appliance has not yet accepted them (the
 * listen backlog; Linux caps it at net.core.somaxconn, 4096 by default since 5.4). Node's default,
 * 511, overflowed when every agent of a large fleet reconnected at once (issue 14: past about 14,000
 * TLS agents in a bare test): the SYNs beyond it were dropped and each such agent waited out TCP's
 * retransmission (1 s, then 3 s …) before it was even queued.
 */
export const LISTEN_BACKLOG = 65_535;

/**
 * The ingest port's transport settings (message size, streams per connection, keepalive, idle
 * close); ct-ops-loadtest's floor server uses the same, so the floor differs only in what it does per call.
 */
export const INGEST_TRANSPORT_OPTIONS = {
  'grpc.max_receive_message_length': MAX_RECEIVE_MESSAGE_BYTES,
  'grpc.max_concurrent_streams': MAX_CONCURRENT_STREAMS,
  // The appliance sends no keepalive pings of its own (decision 153): a stream's heartbeat deadline
  // notices a dead agent, and max_connection_idle_ms then closes its connection. Pings from the
  // appliance, once per connection every 30 s, came due together on every connection a storm had
  // opened at once and blocked the event loop for 0.3–0.5 s every 30 s at 18,000 agents. The
  // agents' own pings (every 30 s, agent/transport/grpc-transport.ts) are allowed and answered.
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  // A peer pinging more often than min_ping_interval twice in a row is sent GOAWAY.
  'grpc.http2.max_ping_strikes': 2,
  // A connection without a call for this long is closed (GOAWAY): an agent streams all the
  // time, so only a connection no caller uses is idle this long — one a closed client channel
  // opened late, say; keepalive alone would keep it forever (decisions.md 36).
  'grpc.max_connection_idle_ms': MAX_CONNECTION_IDLE_MS,
} as const;

export async function startGrpcServer(listen: string, port: number, tls: TlsMaterial, deps: RegisterDeps & HeartbeatDeps & InventoryDeps): Promise<GrpcServer> {
  const proto = loadIngestProto();
  const guards = createIngestGuards(deps.log);
  const credentials = new ReloadableServerCredentials(tls.serverCertPem, tls.serverKeyPem);
  // Our own listener, for its backlog (grpc-js's bindAsync takes Node's default) and for admission
  // control (ConnectionGate): each accepted socket waits unread for a setup slot, then is handed to
  // grpc-js, which does the TLS and HTTP/2 as for a port it bound itself (certificate rotation
  // included: the injector's server watches the same credentials).
  const gate = new ConnectionGate((socket) => injector.injectConnection(socket), deps.log);
  const server = new grpc.Server({
    ...INGEST_TRANSPORT_OPTIONS,
    // The innermost first: boundRequestArrival must hear every message and status.
    interceptors: [boundRequestArrival(guards), refuseMalformedRequests(guards), settleOnFirstCall(gate)],
  });
  server.addService(withStrictRequests(proto.ctops.ingest.v1.IngestService.service), {
    Register: registerHandler({ ...deps, ...guards }),
    GetRegisterChallenge: registerChallengeHandler({ ...deps, ...guards }),
    Heartbeat: heartbeatHandler({ ...deps, ...guards }),
    SubmitSoftwareInventory: inventoryHandler({ ...deps, ...guards }),
  });
  const injector = server.createConnectionInjector(credentials);
  const listener = createServer({ pauseOnConnect: true }, (socket) => gate.offer(socket));
  const boundPort = await listenOn(listener, listen, port, deps.log);
  return {
    port: boundPort,
    useCertificate: (certPem, keyPem) => credentials.use(certPem, keyPem),
    stop: (graceMs) =>
      new Promise<void>((resolve) => {
        listener.close();
        gate.close();
        const stopped = (): void => {
          guards.refusals.close();
          resolve();
        };
        const force = setTimeout(() => {
          server.forceShutdown();
          stopped();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          stopped();
        });
      }),
  };
}

/**
 * Listens on `host`:`port` (0: a free port) with LISTEN_BACKLOG; answers the port. Errors:
 * ERR_LISTEN_FAILED. Once listening, a failed accept (EMFILE: out of file descriptors) is logged, not
 * thrown: the connection is lost, the listener and every open stream stay.
 */
export function listenOn(listener: NetServer, host: string, port: number, log: Logger): Promise<number> {
  return new Promise((resolve, reject) => {
    const refused = (error: Error): void => {
      const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      reject(new CtOpsError('ERR_LISTEN_FAILED', `cannot listen for gRPC on ${address}: ${error.message}`, { address }, { cause: error }));
    };
    listener.once('error', refused);
    listener.listen({ host, port, backlog: LISTEN_BACKLOG }, () => {
      listener.off('error', refused);
      listener.on('error', (error) => log.warn({ err: error }, 'the gRPC listener could not accept a connection'));
      resolve((listener.address() as { port: number }).port);
    });
  });
}

/**
 * Server TLS credentials whose certificate can be replaced while the server runs. grpc-js 1.14 has no
 * public call for it, but its ServerCredentials base class notifies the bound HTTP/2 servers of new
 * context options (they call setSecureContext), the mechanism its certificate providers use: this
 * subclass feeds it. New TLS handshakes get the new certificate; open connections keep theirs.
 */
class ReloadableServerCredentials extends grpc.ServerCredentials {
  constructor(certPem: string, keyPem: string) {
    // No client certificates (agents authenticate by JWT); the constructor options are those of createSsl.
    super({ requestCert: false }, contextOptions(certPem, keyPem));
  }

  use(certPem: string, keyPem: string): void {
    this.updateSecureContextOptions(contextOptions(certPem, keyPem));
  }

  override _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function contextOptions(certPem: string, keyPem: string): { cert: Buffer; key: Buffer } {
  return { cert: Buffer.from(certPem), key: Buffer.from(keyPem) };
}
