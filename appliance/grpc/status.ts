import * as grpc from '@grpc/grpc-js';
import { CtOpsError, grpcDetails } from '../../common/errors.ts';
import { RETRY_AFTER_MS_METADATA } from '../../common/retry-hint.ts';

/**
 * Our error as a gRPC status: the catalogue's status code, details "ERR_CODE: message". Any error
 * that says when to come back (details.retry_after_ms, whole ms: ERR_REGISTER_THROTTLED,
 * ERR_STREAM_RATE_LIMITED, ERR_HOST_IDENTITY_CONFLICT, a stopping appliance's
 * ERR_INGEST_UNREACHABLE) carries it as the trailing metadata of common/retry-hint.ts.
 */
export function toServiceError(error: unknown): Pick<grpc.StatusObject, 'code' | 'details'> & { metadata?: grpc.Metadata } {
  const known = error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error });
  // The catalogue's numbers are google.rpc.Code, which grpc.status enumerates.
  const status = { code: known.grpcStatus as number as grpc.status, details: grpcDetails(known) };
  const retryAfterMs = known.details.retry_after_ms;
  if (typeof retryAfterMs !== 'number') return status;
  const metadata = new grpc.Metadata();
  metadata.set(RETRY_AFTER_MS_METADATA, String(retryAfterMs));
  return { ...status, metadata };
}
