import { isIP } from 'node:net';
import { connect } from 'node:tls';
import { CtOpsError } from '../../common/errors.ts';
import { certificateTimeError, isCertificateTimeFailure, untrustedError, type IngestEndpoint } from './failure.ts';

const PROBE_TIMEOUT_MS = 10_000;

/** Network errors: the address cannot be reached. Anything else during the handshake is trust. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'EADDRNOTAVAIL']);

/**
 * Opens one TLS connection to the ingest address with the same trust as the gRPC
 * channel (ca_cert_file or system roots, hostname checked) and closes it. Resolves
 * when the server is reachable and trusted; rejects with ERR_INGEST_UNREACHABLE,
 * ERR_INGEST_TLS_CLOCK (the certificate is not valid at this host's clock) or
 * ERR_INGEST_TLS_UNTRUSTED otherwise.
 */
export function probeIngestTls(ingest: IngestEndpoint & { readonly caPem: string | undefined }): Promise<void> {
  const { host, port, target } = ingest.address;
  return new Promise((resolve, reject) => {
    const socket = connect({
      host,
      port,
      // SNI must not carry an IP literal; Node then checks the certificate's IP SANs.
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(ingest.caPem === undefined ? {} : { ca: ingest.caPem }),
      ALPNProtocols: ['h2'],
      timeout: PROBE_TIMEOUT_MS,
    });
    socket.once('secureConnect', () => {
      socket.end();
      resolve();
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new CtOpsError('ERR_INGEST_UNREACHABLE', `ingest ${target} did not complete a TLS handshake within ${PROBE_TIMEOUT_MS / 1000}s`, { address: target }));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      if (error.code !== undefined && UNREACHABLE_CODES.has(error.code)) {
        reject(new CtOpsError('ERR_INGEST_UNREACHABLE', `cannot reach ingest ${target}: ${error.message}`, { address: target }, { cause: error }));
        return;
      }
      const timeFailure = isCertificateTimeFailure(`${error.code ?? ''} ${error.message}`);
      reject(timeFailure ? certificateTimeError(ingest, error.message, error) : untrustedError(ingest, error.message, error));
    });
  });
}
