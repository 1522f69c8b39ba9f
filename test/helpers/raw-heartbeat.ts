/**
 * Heartbeat calls written by hand over node:http2, for peers no generated client can play: one whose
 * HTTP/2 window stays closed (it never reads) or opens a few bytes at a time (it reads slowly).
 */
import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import protobuf from 'protobufjs';
import { RETRY_AFTER_MS_METADATA } from '../../common/retry-hint.ts';
import { INGEST_PROTO_TEXT } from '../../proto/gen/ingest-proto-text.ts';

const HEARTBEAT_PATH = '/ctops.ingest.v1.IngestService/Heartbeat';
const HEARTBEAT_TYPE = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root.lookupType('ctops.ingest.v1.HeartbeatRequest');

/** A HeartbeatRequest as one gRPC message frame (flag byte, 4-byte length, protobuf). */
export function heartbeatFrame(agentId: string, agentVersion = '0.1.0-test', sequence = 1): Buffer {
  const body = HEARTBEAT_TYPE.encode(HEARTBEAT_TYPE.fromObject({
    agent_id: agentId, cpu_percent: 1, memory_percent: 1, disk_percent: 1, uptime_seconds: 1,
    timestamp_unix: Math.floor(Date.now() / 1000), sequence, interval_secs: 5, agent_version: agentVersion,
  })).finish();
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  Buffer.from(body).copy(frame, 5);
  return frame;
}

/** One raw Heartbeat call: what it was answered (from the headers, readable even with a closed window) and whether it ended. */
export interface RawHeartbeatCall {
  stream: ClientHttp2Stream;
  status: string | undefined;
  message: string | undefined;
  retryAfterMs: string | undefined;
  /** The appliance sent response headers without a status: it admitted the call and wrote to it. */
  answered: boolean;
  closed: boolean;
}

/**
 * A connection whose HTTP/2 initial window is `windowBytes` on every stream (0: the appliance cannot
 * send one byte of DATA; a stream it closes stays open waiting to flush what it wrote).
 */
export function rawSession(port: number, ca: string, windowBytes = 0): ClientHttp2Session {
  const session = http2Connect(`https://localhost:${port}`, { ca, settings: { initialWindowSize: windowBytes } });
  session.on('error', () => undefined);
  return session;
}

/**
 * Opens a Heartbeat call on `session` with the JWT `jwt` and writes `frames`; the call is never read
 * unless the caller reads its stream. As every gRPC client does, a status ends the call on our side
 * too: a refused call left half-open would keep one of its connection's 16 stream slots.
 */
export function openRawHeartbeat(session: ClientHttp2Session, jwt: string, frames: readonly Buffer[]): RawHeartbeatCall {
  const stream = session.request({ ':method': 'POST', ':path': HEARTBEAT_PATH, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${jwt}` });
  const call: RawHeartbeatCall = { stream, status: undefined, message: undefined, retryAfterMs: undefined, answered: false, closed: false };
  stream.on('response', (headers) => (call.answered ||= headers['grpc-status'] === undefined));
  const take = (headers: Record<string, unknown>): void => {
    call.status ??= headers['grpc-status'] as string | undefined;
    call.retryAfterMs ??= headers[RETRY_AFTER_MS_METADATA] as string | undefined;
    call.message ??= headers['grpc-message'] === undefined ? undefined : decodeURIComponent(headers['grpc-message'] as string);
    if (call.status !== undefined) stream.end();
  };
  stream.on('response', take);
  stream.on('trailers', take);
  stream.on('error', () => undefined);
  stream.on('close', () => (call.closed = true));
  for (const frame of frames) stream.write(frame);
  return call;
}
