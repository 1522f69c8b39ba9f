import type * as grpc from '@grpc/grpc-js';
import { CtOpsError, grpcDetails } from '../../common/errors.ts';

/** Our error as a gRPC status: the catalogue's status code, details "ERR_CODE: message". */
export function toServiceError(error: unknown): Pick<grpc.StatusObject, 'code' | 'details'> {
  const known = error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error });
  // The catalogue's numbers are google.rpc.Code, which grpc.status enumerates.
  return { code: known.grpcStatus as number as grpc.status, details: grpcDetails(known) };
}
