import { TRUST_FILE } from '../identity/trust.ts';
import { codeFromGrpcDetails, CtOpsError } from '../../common/errors.ts';
import { parseRetryAfterMs, RETRY_AFTER_MS_METADATA } from '../../common/retry-hint.ts';
import type { IngestAddress } from '../config/address.ts';
import type { RpcFailure } from './types.ts';

/** The trailing metadata of a status, as grpc-js hands it over (only what is read here). */
interface StatusMetadata {
  get(key: string): (string | Buffer)[];
}

/** One ingest address and the configured CA it is verified against, as a TLS error names them. */
export interface IngestEndpoint {
  readonly address: IngestAddress;
  /** Absolute path of ca_cert_file, or undefined for the system roots. */
  readonly caCertFile: string | undefined;
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

/**
 * OpenSSL's words (X509_V_ERR_CERT_HAS_EXPIRED, _CERT_NOT_YET_VALID and their CRL twins) for a
 * certificate whose validity window does not contain this host's clock. Most often the clock is
 * what is wrong (an RTC reset to 1970 or the build date, set by NTP a little after boot), so
 * this is retried, never fatal: a fatal exit would keep the agent down after the clock is fixed.
 */
const CERT_TIME_PATTERN = /(certificate|CRL) (has expired|is not yet valid)|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|CRL_HAS_EXPIRED|CRL_NOT_YET_VALID/i;

/** The agent's log line for it, with local_time: the clock the certificate was judged by. */
export const CERTIFICATE_TIME_WARNING = "ingest certificate not valid at this host's clock (its validity window does not contain local_time); check the host clock";

/** Whether a TLS failure (a status's details or a TLS error message) is the certificate's validity window. */
export function isCertificateTimeFailure(details: string): boolean {
  return CERT_TIME_PATTERN.test(details);
}

/** A TLS failure retrying cannot fix; a certificate invalid at this host's clock is not one. */
export function isTlsTrustFailure(failure: RpcFailure): boolean {
  return failure.errorCode === undefined && TLS_TRUST_PATTERN.test(failure.details) && !isCertificateTimeFailure(failure.details);
}

/** The message names the host clock, its reading now (local ISO time) and the address. */
export function certificateTimeError(ingest: IngestEndpoint, reason: string, cause?: unknown): CtOpsError {
  const localTime = new Date().toISOString();
  return new CtOpsError(
    'ERR_INGEST_TLS_CLOCK',
    `the certificate of ingest ${ingest.address.display} is not valid at this host's clock (${localTime}): its validity window does not contain the local time; check the host clock (NTP, RTC): ${reason}`,
    { address: ingest.address.target, local_time: localTime },
    { cause },
  );
}

/**
 * The message names the trust in use (ca_cert_file, the system roots, or the stored trust bundle of
 * `trustGeneration` > 0), the address the certificate must name, and the recovery when the
 * appliance's CA was rotated while this agent could not reach it (docs/operations.md, Certificate rotation).
 */
export function untrustedError(ingest: IngestEndpoint, reason: string, cause?: unknown, trustGeneration = 0): CtOpsError {
  const configured = ingest.caCertFile === undefined ? 'the system CA roots ([ingest] ca_cert_file is empty)' : `ca_cert_file ${ingest.caCertFile}`;
  const trust = trustGeneration > 0 ? `the trust bundle (generation ${trustGeneration}) the appliance sent, stored in the data directory as ${TRUST_FILE}` : configured;
  return new CtOpsError(
    'ERR_INGEST_TLS_UNTRUSTED',
    `the certificate of ingest ${ingest.address.display} is not trusted by ${trust} or does not name ${ingest.address.host}: ${reason}. ` +
      "If the appliance's CA was rotated while this agent could not reach it, put the appliance's current ca.crt in ca_cert_file (or reinstall from a new bundle) and restart the agent",
    { address: ingest.address.target, ca_cert_file: ingest.caCertFile ?? '', trust_generation: trustGeneration },
    { cause },
  );
}
