import * as grpc from '@grpc/grpc-js';
import { fromJSON, type Options } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { CtOpsError } from './errors.ts';
import type { ProtoGrpcType } from '../proto/gen/ingest.ts';
import { INGEST_PROTO_TEXT } from '../proto/gen/ingest-proto-text.ts';

/**
 * Loader options. They must match the flags scripts/build.mjs passes to
 * proto-loader-gen-types, or the generated types would describe other objects.
 */
export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/**
 * Loads the ingest contract from the .proto text embedded at build time, so a single
 * executable agent needs no .proto file beside it.
 */
export function loadIngestProto(): ProtoGrpcType {
  const definition = fromJSON(parseIngestRoot().toJSON(), PROTO_LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
}

function parseIngestRoot(): protobuf.Root {
  const root = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root;
  root.resolveAll();
  return root;
}

/**
 * A request deserializer for the RPC at this gRPC path (`/ctops.ingest.v1.IngestService/Register`)
 * that decodes exactly as @grpc/proto-loader's does, but first checks the wire bytes: every
 * string field, at any depth and in map keys and values, must be well-formed UTF-8. protobufjs
 * would decode invalid UTF-8 by silently putting U+FFFD in its place, after which the damage can
 * no longer be told from a real U+FFFD, so only the raw bytes can be judged.
 * Throws ERR_INVALID_ARGUMENT naming the field (`RegisterRequest.hostname is not valid UTF-8`;
 * `… has wire type 0, not length-delimited` for a string or message field sent otherwise, which
 * protobufjs would still decode by its field number),
 * or naming the message when its bytes are not protobuf at all (truncated, bad wire type);
 * ERR_MESSAGE_TOO_LARGE, before anything is read, for a message over `maxBytes`.
 * `lenient` names repeated message fields of the request whose elements are judged one by one
 * (SoftwareInventoryChunk.packages: one package with invalid UTF-8 must not cost the chunk): an
 * element with invalid UTF-8 is still decoded (with U+FFFD), and its position is listed under the
 * decoded object's INVALID_UTF8_ELEMENTS key, for the handler to skip it.
 */
export function strictRequestDeserializer(path: string, maxBytes = Number.POSITIVE_INFINITY, lenient: readonly string[] = []): (bytes: Buffer) => unknown {
  const [, serviceName = '', methodName = ''] = /^\/([^/]+)\/([^/]+)$/.exec(path) ?? [];
  const type = parseIngestRoot().lookupService(serviceName).methods[methodName]?.resolvedRequestType;
  if (!type) throw new Error(`no RPC ${path} in the ingest contract`);
  const plan = textPlan(type, new Map());
  return (bytes) => {
    if (bytes.length > maxBytes) {
      throw new CtOpsError('ERR_MESSAGE_TOO_LARGE', `${type.name} is ${bytes.length} bytes, over the ${maxBytes} this method accepts`, { field: type.name, bytes: bytes.length, max_bytes: maxBytes });
    }
    try {
      const invalid: InvalidUtf8Elements = new Map(lenient.map((name) => [name, new Set<number>()]));
      checkText(plan, protobuf.Reader.create(bytes), bytes.length, type.name, invalid);
      const decoded = type.toObject(type.decode(bytes), PROTO_LOADER_OPTIONS);
      if (lenient.length > 0) Object.defineProperty(decoded, INVALID_UTF8_ELEMENTS, { value: invalid });
      return decoded;
    } catch (error) {
      if (error instanceof CtOpsError) throw error;
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `${type.name} is not a valid protobuf message: ${(error as Error).message}`, { field: type.name }, { cause: error });
    }
  };
}

/**
 * The fields of a message that can hold text, by field number: a string, or a message holding
 * strings. A map field is a repeated entry message (key = 1, value = 2) with an empty name, so
 * its keys and values are reported under the map's own name.
 */
interface TextPlan extends Map<number, { readonly name: string; readonly holds: 'string' | TextPlan }> {}

function textPlan(type: protobuf.Type, seen: Map<protobuf.Type, TextPlan>): TextPlan {
  const known = seen.get(type);
  if (known) return known;
  const plan: TextPlan = new Map();
  seen.set(type, plan);
  const holds = (fieldType: string, resolved: protobuf.ReflectionObject | null): 'string' | TextPlan | undefined =>
    fieldType === 'string' ? 'string' : resolved instanceof protobuf.Type ? textPlan(resolved, seen) : undefined;
  for (const field of type.fieldsArray) {
    if (field instanceof protobuf.MapField) {
      const entry: TextPlan = new Map();
      if (field.keyType === 'string') entry.set(1, { name: '', holds: 'string' });
      const value = holds(field.type, field.resolvedType);
      if (value) entry.set(2, { name: '', holds: value });
      plan.set(field.id, { name: field.name, holds: entry });
    } else {
      const content = holds(field.type, field.resolvedType);
      if (content) plan.set(field.id, { name: field.name, holds: content });
    }
  }
  return plan;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The key of a decoded request under which a lenient deserializer lists elements with invalid UTF-8. */
export const INVALID_UTF8_ELEMENTS = Symbol('invalid-utf8-elements');
/** By lenient field name: the 0-based positions of its elements that hold invalid UTF-8. */
export type InvalidUtf8Elements = Map<string, Set<number>>;

/** The positions of a lenient field's elements that hold invalid UTF-8 (none when the field is not lenient). */
export function invalidUtf8Elements(decoded: object, field: string): ReadonlySet<number> {
  return (decoded as { [INVALID_UTF8_ELEMENTS]?: InvalidUtf8Elements })[INVALID_UTF8_ELEMENTS]?.get(field) ?? new Set();
}

function checkText(plan: TextPlan, reader: protobuf.Reader, end: number, path: string, lenient: InvalidUtf8Elements = new Map()): void {
  const seen = new Map<string, number>();
  while (reader.pos < end) {
    const tag = reader.uint32();
    const wireType = tag & 7;
    const field = plan.get(tag >>> 3);
    if (!field) {
      reader.skipType(wireType);
      continue;
    }
    const name = field.name === '' ? path : `${path}.${field.name}`;
    // protobufjs decodes by field number alone: a text field sent as a varint would be skipped
    // here yet decoded there as a string, unchecked.
    if (wireType !== 2) {
      // A value that is not even well-formed (wire type 7, an endless varint) is refused as malformed first.
      reader.skipType(wireType);
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `${name} has wire type ${wireType}, not length-delimited`, { field: name.slice(name.indexOf('.') + 1) });
    }
    const bytes = reader.bytes();
    if (field.holds !== 'string') {
      const invalid = lenient.get(field.name);
      const position = seen.get(field.name) ?? 0;
      seen.set(field.name, position + 1);
      try {
        checkText(field.holds, protobuf.Reader.create(bytes), bytes.length, name);
      } catch (error) {
        if (!invalid || !(error instanceof CtOpsError && error.details.reason === 'invalid_utf8')) throw error;
        invalid.add(position);
      }
      continue;
    }
    try {
      STRICT_UTF8.decode(bytes);
    } catch {
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `${name} is not valid UTF-8`, { field: name.slice(name.indexOf('.') + 1), reason: 'invalid_utf8' });
    }
  }
}

export type { ProtoGrpcType };
export type { RegisterRequest, RegisterRequest__Output } from '../proto/gen/ctops/ingest/v1/RegisterRequest.ts';
export type { RegisterResponse, RegisterResponse__Output } from '../proto/gen/ctops/ingest/v1/RegisterResponse.ts';
export type { RegisterChallenge, RegisterChallenge__Output } from '../proto/gen/ctops/ingest/v1/RegisterChallenge.ts';
export type { RegisterChallengeRequest, RegisterChallengeRequest__Output } from '../proto/gen/ctops/ingest/v1/RegisterChallengeRequest.ts';
export type { HeartbeatRequest, HeartbeatRequest__Output } from '../proto/gen/ctops/ingest/v1/HeartbeatRequest.ts';
export type { HostFacts, HostFacts__Output } from '../proto/gen/ctops/ingest/v1/HostFacts.ts';
export type { HeartbeatResponse, HeartbeatResponse__Output } from '../proto/gen/ctops/ingest/v1/HeartbeatResponse.ts';
export type { AgentStatus } from '../proto/gen/ctops/ingest/v1/AgentStatus.ts';
export type { IngestServiceClient, IngestServiceHandlers } from '../proto/gen/ctops/ingest/v1/IngestService.ts';
export type { SoftwareInventoryChunk, SoftwareInventoryChunk__Output } from '../proto/gen/ctops/ingest/v1/SoftwareInventoryChunk.ts';
export type { SoftwareInventoryResponse, SoftwareInventoryResponse__Output } from '../proto/gen/ctops/ingest/v1/SoftwareInventoryResponse.ts';
export type { Task, Task__Output } from '../proto/gen/ctops/ingest/v1/Task.ts';
export type { TaskUpdate, TaskUpdate__Output } from '../proto/gen/ctops/ingest/v1/TaskUpdate.ts';
export type { TrustBundle, TrustBundle__Output } from '../proto/gen/ctops/ingest/v1/TrustBundle.ts';
export type { UpdateOffer, UpdateOffer__Output } from '../proto/gen/ctops/ingest/v1/UpdateOffer.ts';
export type { UpdateStatus, UpdateStatus__Output } from '../proto/gen/ctops/ingest/v1/UpdateStatus.ts';

/**
 * Call metadata that marks a Heartbeat stream as a one-off report (`ct-ops-agent report-task`,
 * run by the uninstaller): the appliance applies its task reports and acks it, but it does not
 * count as the agent being online, gets no tasks and records no vitals.
 */
export const REPORT_ONLY_METADATA = 'x-ct-ops-report-only';
