import * as grpc from '@grpc/grpc-js';
import { fromJSON, type Options } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
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
  const root = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root;
  const definition = fromJSON(root.toJSON(), PROTO_LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
}

export type { ProtoGrpcType };
export type { RegisterRequest, RegisterRequest__Output } from '../proto/gen/ctops/ingest/v1/RegisterRequest.ts';
export type { RegisterResponse, RegisterResponse__Output } from '../proto/gen/ctops/ingest/v1/RegisterResponse.ts';
export type { HeartbeatRequest, HeartbeatRequest__Output } from '../proto/gen/ctops/ingest/v1/HeartbeatRequest.ts';
export type { HeartbeatResponse, HeartbeatResponse__Output } from '../proto/gen/ctops/ingest/v1/HeartbeatResponse.ts';
export type { AgentStatus } from '../proto/gen/ctops/ingest/v1/AgentStatus.ts';
export type { IngestServiceClient, IngestServiceHandlers } from '../proto/gen/ctops/ingest/v1/IngestService.ts';
export type { SoftwareInventoryChunk, SoftwareInventoryChunk__Output } from '../proto/gen/ctops/ingest/v1/SoftwareInventoryChunk.ts';
export type { SoftwareInventoryResponse, SoftwareInventoryResponse__Output } from '../proto/gen/ctops/ingest/v1/SoftwareInventoryResponse.ts';
export type { Task, Task__Output } from '../proto/gen/ctops/ingest/v1/Task.ts';
export type { TaskUpdate, TaskUpdate__Output } from '../proto/gen/ctops/ingest/v1/TaskUpdate.ts';

/**
 * Call metadata that marks a Heartbeat stream as a one-off report (`ct-ops-agent report-task`,
 * run by the uninstaller): the appliance applies its task reports and acks it, but it does not
 * count as the agent being online, gets no tasks and records no vitals.
 */
export const REPORT_ONLY_METADATA = 'x-ct-ops-report-only';
