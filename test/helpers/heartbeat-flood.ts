/**
 * A hostile enrolled agent, run as its own process so its busy loop does not slow the test
 * process that times the honest agents: raw HTTP/2 (node:http2) with a valid JWT, heartbeat
 * frames written as fast as flow control allows on several streams of one connection, each
 * stream reopened as soon as the appliance ends it. With FLOOD_READ=0 it never reads what the
 * appliance sends (the streams stay paused, so HTTP/2 flow control pushes back on the server).
 *
 * Environment: FLOOD_PORT, FLOOD_CA (PEM), FLOOD_JWT, FLOOD_AGENT_ID, FLOOD_SECS, FLOOD_READ (1|0),
 * FLOOD_STREAMS (streams kept open at once). Prints one JSON line at the end:
 * {frames, streams, statuses: {grpc-status: count}, errors}.
 */
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import protobuf from 'protobufjs';
import { INGEST_PROTO_TEXT } from '../../proto/gen/ingest-proto-text.ts';

const HEARTBEAT_PATH = '/ctops.ingest.v1.IngestService/Heartbeat';

/** One gRPC message frame: uncompressed flag, 4-byte big-endian length, the protobuf bytes. */
function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

/** Encodes a HeartbeatRequest (field names as in the .proto) with the contract's own definition. */
function encodeHeartbeat(fields: Record<string, unknown>): Uint8Array {
  const type = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root.lookupType('ctops.ingest.v1.HeartbeatRequest');
  return type.encode(type.fromObject(fields)).finish();
}

interface FloodStats {
  frames: number;
  streams: number;
  statuses: Record<string, number>;
  errors: number;
}

function flood(session: ClientHttp2Session, jwt: string, frame: Buffer, read: boolean, stats: FloodStats, running: () => boolean): void {
  if (!running() || session.closed || session.destroyed) return;
  let stream: ClientHttp2Stream;
  try {
    stream = session.request({ ':method': 'POST', ':path': HEARTBEAT_PATH, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${jwt}` });
  } catch {
    stats.errors += 1;
    setTimeout(() => flood(session, jwt, frame, read, stats, running), 10);
    return;
  }
  stats.streams += 1;
  let status: string | undefined;
  const take = (headers: Record<string, unknown>): void => {
    status ??= headers['grpc-status'] as string | undefined;
    // As every gRPC client does, a status ends the call: stop writing and let the stream close.
    if (status !== undefined) stream.end();
  };
  stream.on('response', take);
  stream.on('trailers', take);
  if (read) stream.on('data', () => undefined);
  else stream.pause();
  stream.on('error', () => {
    stats.errors += 1;
  });
  stream.on('close', () => {
    const key = status ?? 'none';
    stats.statuses[key] = (stats.statuses[key] ?? 0) + 1;
    setImmediate(() => flood(session, jwt, frame, read, stats, running));
  });
  const write = (): void => {
    while (running() && status === undefined && stream.writable) {
      stats.frames += 1;
      if (!stream.write(frame)) {
        stream.once('drain', write);
        return;
      }
    }
  };
  write();
}

async function main(): Promise<void> {
  const env = process.env;
  const seconds = Number(env.FLOOD_SECS);
  const read = env.FLOOD_READ === '1';
  const jwt = env.FLOOD_JWT!;
  const frame = grpcFrame(
    encodeHeartbeat({ agent_id: env.FLOOD_AGENT_ID, cpu_percent: 1, memory_percent: 1, disk_percent: 1, uptime_seconds: 1, timestamp_unix: Math.floor(Date.now() / 1000), sequence: 1, interval_secs: 5, agent_version: '6.6.6' }),
  );
  const stats: FloodStats = { frames: 0, streams: 0, statuses: {}, errors: 0 };
  const until = Date.now() + seconds * 1000;
  const running = (): boolean => Date.now() < until;
  const session = connect(`https://localhost:${env.FLOOD_PORT}`, { ca: env.FLOOD_CA });
  session.on('error', () => {
    stats.errors += 1;
  });
  for (let index = 0; index < Number(env.FLOOD_STREAMS); index += 1) flood(session, jwt, frame, read, stats, running);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  session.destroy();
  process.stdout.write(`${JSON.stringify(stats)}\n`);
}

await main();
