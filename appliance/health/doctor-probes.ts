import { request } from 'node:https';
import { connect } from 'node:tls';

/**
 * What answers on a port: `ours` completes a TLS handshake with a certificate of this appliance's
 * CA, `free` refuses the connection, `foreign` is anything else (another program, or no CA to check by).
 */
export type PortState = 'ours' | 'free' | 'foreign';

/** The status and fields of a /healthz answer. */
export interface HealthzAnswer {
  readonly status: number;
  readonly version?: string;
  readonly reason?: string;
}

/** How long one probe waits for a connection or an answer. */
const PROBE_TIMEOUT_MS = 3_000;

/**
 * TLS options of a probe: the chain must lead to the appliance CA. The name is not checked: the
 * doctor dials loopback, which the server certificate need not name (its names are a check of their own).
 */
function tlsOptions(host: string, port: number, ca: string): { host: string; port: number; ca: string; checkServerIdentity: () => undefined; timeout: number } {
  return { host, port, ca, checkServerIdentity: () => undefined, timeout: PROBE_TIMEOUT_MS };
}

/** Who listens on host:port, judged by the TLS handshake against `ca` (PEM); never throws. */
export function probePort(host: string, port: number, ca: string | undefined): Promise<PortState> {
  return new Promise((resolve) => {
    // Without our CA every listener is unverifiable; a throwaway CA-less handshake still tells free from used.
    const socket = connect({ ...tlsOptions(host, port, ca ?? ''), ALPNProtocols: ['h2', 'http/1.1'] });
    const settle = (state: PortState): void => {
      socket.destroy();
      resolve(state);
    };
    socket.once('secureConnect', () => settle(ca !== undefined && socket.authorized ? 'ours' : 'foreign'));
    socket.once('timeout', () => settle('foreign'));
    socket.once('error', (error: NodeJS.ErrnoException) => settle(error.code === 'ECONNREFUSED' ? 'free' : 'foreign'));
  });
}

/** GET /healthz over HTTPS trusting only `ca`; undefined when nothing answers in time. */
export function probeHealthz(host: string, port: number, ca: string | undefined): Promise<HealthzAnswer | undefined> {
  if (ca === undefined) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const call = request({ ...tlsOptions(host, port, ca), path: '/healthz', method: 'GET' }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        let body: { version?: unknown; reason?: unknown } = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
        } catch {
          // A non-JSON answer is judged by its status alone.
        }
        resolve({ status: response.statusCode ?? 0, ...(typeof body.version === 'string' && { version: body.version }), ...(typeof body.reason === 'string' && { reason: body.reason }) });
      });
      response.on('error', () => resolve(undefined));
    });
    call.on('timeout', () => call.destroy());
    call.on('error', () => resolve(undefined));
    call.end();
  });
}
