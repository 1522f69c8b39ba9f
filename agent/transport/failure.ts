import { codeFromGrpcDetails, CtOpsError } from '../../common/errors.ts';
import { parseRetryAfterMs, RETRY_AFTER_MS_METADATA } from '../../common/retry-hint.ts';
import type { AgentConfig } from '../config/types.ts';
import type { RpcFailure } from './types.ts';

/** The trailing metadata of a status, as grpc-js hands it over (only what is read here). */
interface StatusMetadata {
  get(key: string): (string | Buffer)[];
}

export function rpcFailure(status: { code: number; details?: string | undefined; metadata?: StatusMetadata | undefined }): RpcFailure {
  const details = status.details ?? '';
  const retryAfterMs = status.metadata && parseRetryAfterMs(status.metadata.get(RETRY_AFTER_MS_METADATA));
  return { grpcCode: status.code, errorCode: codeFromGrpcDetails(details), details, retryAfterMs };
}

/**
 * grpc-js reports a rejected server certificate as UNAVAILABLE with the TLS error in the
 * details; retrying cannot fix it, so the agent must tell the admin instead.
 */
const TLS_TRUST_PATTERN = /certificate|self[- ]signed|altnames|SSL|handshake/i;

export function isTlsTrustFailure(failure: RpcFailure): boolean {
  return failure.errorCode === undefined && TLS_TRUST_PATTERN.test(failure.details);
}

/** The message names the setting to fix and the address the certificate must name. */
export function untrustedError(ingest: AgentConfig['ingest'], reason: string, cause?: unknown): CtOpsError {
  const trust = ingest.caCertFile === undefined ? 'the system CA roots ([ingest] ca_cert_file is empty)' : `ca_cert_file ${ingest.caCertFile}`;
  return new CtOpsError(
    'ERR_INGEST_TLS_UNTRUSTED',
    `the certificate of ingest ${ingest.address.display} is not trusted by ${trust} or does not name ${ingest.address.host}: ${reason}`,
    { address: ingest.address.target, ca_cert_file: ingest.caCertFile ?? '' },
    { cause },
  );
}
