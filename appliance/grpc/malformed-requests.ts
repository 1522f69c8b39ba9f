import * as grpc from '@grpc/grpc-js';
import { MAX_HEARTBEAT_REQUEST_BYTES } from '../../common/heartbeat-limits.ts';
import { strictRequestDeserializer } from '../../common/proto.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { IngestGuards } from './guards.ts';
import { refuseRegister } from './register-handler.ts';
import { toServiceError } from './status.ts';

const REFUSED = Symbol('refused request');

/** What a strict deserializer hands on in place of a message it refused: its error (ERR_INVALID_ARGUMENT, ERR_MESSAGE_TOO_LARGE). */
interface RefusedRequest {
  readonly [REFUSED]: unknown;
}

const isRefused = (message: unknown): message is RefusedRequest => typeof message === 'object' && message !== null && REFUSED in message;

/**
 * Message sizes (bytes) below the server's 4 MiB receive limit, which inventory chunks need:
 * a Register is a few KiB at most (32 tags of 320 bytes, a 256-byte token, keys and names), a
 * Heartbeat is bounded by what the agent puts on one (common/heartbeat-limits.ts).
 */
export const MAX_REQUEST_BYTES: Readonly<Record<string, number>> = {
  Register: 64 * 1024,
  GetRegisterChallenge: 1024,
  Heartbeat: MAX_HEARTBEAT_REQUEST_BYTES,
};

/**
 * Repeated fields whose elements are judged one by one (common/proto.ts): a package with invalid
 * UTF-8 is skipped and counted with its scan (appliance/inventory/chunk.ts), not a refused chunk.
 */
const LENIENT_TEXT_FIELDS: Readonly<Record<string, readonly string[]>> = {
  SubmitSoftwareInventory: ['packages'],
};

/**
 * The service definition with every request deserializer made strict (a size within
 * MAX_REQUEST_BYTES, well-formed protobuf, well-formed UTF-8 in every string: common/proto.ts). grpc-js answers any error a deserializer
 * throws with INTERNAL "Error deserializing request", whatever its code, so a refusal is not
 * thrown: it travels as a RefusedRequest to refuseMalformedRequests, which answers it.
 */
export function withStrictRequests(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => {
      const strict = strictRequestDeserializer(method.path, MAX_REQUEST_BYTES[name], LENIENT_TEXT_FIELDS[name]);
      const requestDeserialize = (bytes: Buffer): unknown => {
        try {
          return strict(bytes);
        } catch (error) {
          return { [REFUSED]: error };
        }
      };
      return [name, { ...method, requestDeserialize }];
    }),
  );
}

/**
 * A server interceptor that ends a call with the catalogue's status (INVALID_ARGUMENT, details
 * "ERR_INVALID_ARGUMENT: RegisterRequest.hostname is not valid UTF-8") when a message was
 * refused by withStrictRequests; the handler never sees that message. Each such refusal goes to
 * the refusal log as {peer: source} with `what` = the method ("register", "submitsoftwareinventory"), and a refused Register
 * spends its source's failure budget like any failed Register; once the source is throttled its
 * garbage is answered ERR_REGISTER_THROTTLED (the bytes were deserialized already: grpc-js does
 * that as they arrive, within MAX_REQUEST_BYTES).
 */
export function refuseMalformedRequests(guards: Pick<IngestGuards, 'refusals' | 'registerThrottle'>): grpc.ServerInterceptor {
  // What a call holds for as long as it lasts (a Heartbeat stream: the agent's lifetime) is this layer
  // and its one listener: the refusal is worked out only when a message is refused (issue 14).
  return (method, call) => {
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message: unknown, pass) => {
            if (isRefused(message)) {
              void refusalStatus(guards, method.path, call.getPeer(), message[REFUSED]).then(
                (status) => intercepting.sendStatus(status),
                (error: unknown) => intercepting.sendStatus(toServiceError(error)),
              );
            } else pass(message);
          },
        }),
    });
    return intercepting;
  };
}

/** The status a refused message of `path` from `peer` ends its call with, its refusal logged (and, for a Register, counted). */
async function refusalStatus(guards: Pick<IngestGuards, 'refusals' | 'registerThrottle'>, path: string, peer: string, refusal: unknown): Promise<ReturnType<typeof toServiceError>> {
  // Lower case, as the handlers name what they refuse ("register", "heartbeat").
  const what = path.slice(path.lastIndexOf('/') + 1).toLowerCase();
  const source = peerSource(peer);
  if (what !== 'register' && what !== 'getregisterchallenge') {
    guards.refusals.refused({ peer: source }, refusal, what);
    return toServiceError(refusal);
  }
  const error = await guards.registerThrottle.admit(source).then(
    () => refusal,
    (throttled: unknown) => throttled,
  );
  return refuseRegister(guards, source, error);
}
