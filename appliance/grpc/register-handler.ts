import type * as grpc from '@grpc/grpc-js';
import { CtOpsError } from '../../common/errors.ts';
import type { RegisterRequest__Output, RegisterResponse } from '../../common/proto.ts';
import { parseRegisterRequest } from '../enrolment/register-input.ts';
import { register, type RegisterDeps } from '../enrolment/register.ts';
import { toServiceError } from './status.ts';

export function registerHandler(deps: RegisterDeps): grpc.handleUnaryCall<RegisterRequest__Output, RegisterResponse> {
  return (call, callback) => {
    const now = Date.now();
    let input;
    try {
      input = parseRegisterRequest(call.request);
    } catch (error) {
      callback(toServiceError(error));
      return;
    }
    register(input, deps, now).then(
      (response) => callback(null, response),
      (error: unknown) => {
        const level = error instanceof CtOpsError ? 'warn' : 'error';
        deps.log[level]({ err: error, peer: call.getPeer() }, 'register refused');
        callback(toServiceError(error));
      },
    );
  };
}
