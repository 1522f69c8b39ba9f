import type * as grpc from '@grpc/grpc-js';
import type { RegisterRequest__Output, RegisterResponse } from '../../common/proto.ts';
import { parseRegisterRequest } from '../enrolment/register-input.ts';
import { RegisterThrottle } from '../enrolment/register-throttle.ts';
import { register, type RegisterDeps } from '../enrolment/register.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { IngestGuards } from './guards.ts';
import { toServiceError } from './status.ts';

/**
 * Register: throttled per source (RegisterThrottle); refusals go to the aggregated RefusalLog keyed
 * by the source, since the peer is not authenticated yet.
 */
export function registerHandler(deps: RegisterDeps & Pick<IngestGuards, 'refusals'>): grpc.handleUnaryCall<RegisterRequest__Output, RegisterResponse> {
  const throttle = new RegisterThrottle();
  return (call, callback) => {
    const source = peerSource(call.getPeer());
    // The throttle answers first, so a throttled source costs no parsing, signature check or query.
    throttle
      .admit(source)
      .then(() => register(parseRegisterRequest(call.request), deps, Date.now()))
      .then(
        (response) => callback(null, response),
        async (error: unknown) => {
          await throttle.refused(source, error);
          deps.refusals.refused({ peer: source }, error, 'register');
          callback(toServiceError(error));
        },
      );
  };
}
