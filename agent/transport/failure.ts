import { codeFromGrpcDetails, CtOpsError } from '../../common/errors.ts';
import type { AgentConfig } from '../config/types.ts';
import type { RpcFailure } from './types.ts';

export function rpcFailure(status: { code: number; details?: string | undefined }): RpcFailure {
  const details = status.details ?? '';
  return { grpcCode: status.code, errorCode: codeFromGrpcDetails(details), details };
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
    `the certificate of ingest ${ingest.address.target} is not trusted by ${trust} or does not name ${ingest.address.host}: ${reason}`,
    { address: ingest.address.target, ca_cert_file: ingest.caCertFile ?? '' },
    { cause },
  );
}
