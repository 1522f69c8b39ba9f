import type * as grpc from '@grpc/grpc-js';
import { CtOpsError, grpcDetails } from '../../common/errors.ts';

/** Our error as a gRPC status: the catalogue's status code, details "ERR_CODE: message". */
export function toServiceError(error: unknown): Partial<grpc.StatusObject> {
  const known = error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error });
  return { code: known.grpcStatus, details: grpcDetails(known) };
}
