import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type ClientHttp2Stream } from 'node:http2';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CtOpsError, GrpcCode } from '../common/errors.ts';
import { loadIngestProto, type HeartbeatRequest, type HeartbeatRequest__Output, type HeartbeatResponse, type HeartbeatResponse__Output, type IngestServiceClient } from '../common/proto.ts';
import { writeWithBackpressure } from '../appliance/grpc/stream-writer.ts';

/** What the server's writer saw on one call: acks accepted, the largest buffer, how it ended. */
interface WriterRun {
  accepted: number;
  maxBufferedMessages: number;
  outcome: CtOpsError | undefined;
  stalledForMs: number;
}

const DRAIN_DEADLINE_MS = 1_000;
/** Acks the server writes on a call, one at a time, awaiting each; far more than flow control lets through unread. */
const ACKS_TO_WRITE = 20_000;

let server: grpc.Server;
let client: IngestServiceClient;
let port = 0;
const runs: Promise<WriterRun>[] = [];

/** Writes ACKS_TO_WRITE acks through writeWithBackpressure, each awaited, until one is refused. */
async function writeAcks(call: grpc.ServerDuplexStream<HeartbeatRequest__Output, HeartbeatResponse>): Promise<WriterRun> {
  const run: WriterRun = { accepted: 0, maxBufferedMessages: 0, outcome: undefined, stalledForMs: 0 };
  for (let sequence = 1; sequence <= ACKS_TO_WRITE; sequence += 1) {
    const started = Date.now();
    try {
      await writeWithBackpressure(call, { ack: { sequence, received_unix_ms: started } }, DRAIN_DEADLINE_MS);
    } catch (error) {
      run.outcome = error as CtOpsError;
      run.stalledForMs = Date.now() - started;
      return run;
    }
    run.accepted += 1;
    run.maxBufferedMessages = Math.max(run.maxBufferedMessages, call.writableLength);
  }
  call.end();
  return run;
}

before(async () => {
  const proto = loadIngestProto();
  server = new grpc.Server();
  server.addService(proto.ctops.ingest.v1.IngestService.service, {
    Heartbeat(call: grpc.ServerDuplexStream<HeartbeatRequest__Output, HeartbeatResponse>) {
      call.once('data', () => runs.push(writeAcks(call)));
    },
  });
  port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  client = new proto.ctops.ingest.v1.IngestService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

after(() => {
  client.close();
  server.forceShutdown();
});

/**
 * Opens a Heartbeat call at the HTTP/2 level and sends one empty message (which starts the
 * server's writer), then reads nothing: the stream stays paused, so HTTP/2 flow control pushes
 * back on the server. (grpc-js's own client keeps draining a paused call into memory.)
 */
function openNonReadingCall(): ClientHttp2Stream {
  // A connection of its own: the window of a connection is shared by its streams.
  const session = connect(`http://127.0.0.1:${port}`);
  const stream = session.request({ ':method': 'POST', ':path': '/ctops.ingest.v1.IngestService/Heartbeat', 'content-type': 'application/grpc', te: 'trailers' });
  stream.pause();
  stream.on('error', () => undefined);
  session.on('error', () => undefined);
  stream.on('close', () => session.close());
  stream.write(Buffer.alloc(5));
  return stream;
}

/** Opens a Heartbeat call and sends one message, which starts the server's writer. */
function openCall(): grpc.ClientDuplexStream<HeartbeatRequest, HeartbeatResponse__Output> {
  const call = client.Heartbeat();
  call.write({ agent_id: 'hst_writer', sequence: 1 });
  return call;
}

test('a peer that stops reading: writes stop being accepted within one buffer, and after the drain deadline the stream ends as a slow consumer', { timeout: 30_000 }, async () => {
  const stream = openNonReadingCall();
  while (runs.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  const run = await runs.shift()!;

  assert.ok(run.outcome instanceof CtOpsError, `the writer was not refused: ${run.accepted} acks accepted`);
  assert.equal(run.outcome.code, 'ERR_STREAM_SLOW_CONSUMER');
  assert.ok(run.stalledForMs >= DRAIN_DEADLINE_MS - 20, `refused after ${run.stalledForMs} ms, before the ${DRAIN_DEADLINE_MS} ms deadline`);
  // Flow control stops the writes long before the 20,000 acks: what the peer does not read
  // (HTTP/2 windows, grpc-js's buffers) is all that is held, never a growing queue.
  assert.ok(run.accepted < ACKS_TO_WRITE / 2, `${run.accepted} acks accepted by a peer that reads nothing`);
  assert.ok(run.maxBufferedMessages <= 16, `${run.maxBufferedMessages} messages held in the call's buffer`);

  // Reading again, the peer gets the accepted acks, then the slow-consumer status.
  let receivedBytes = 0;
  stream.on('data', (chunk: Buffer) => (receivedBytes += chunk.length));
  stream.resume();
  const [trailers] = (await once(stream, 'trailers')) as [Record<string, string>];
  assert.equal(Number(trailers['grpc-status']), GrpcCode.RESOURCE_EXHAUSTED);
  assert.match(decodeURIComponent(trailers['grpc-message'] ?? ''), /^ERR_STREAM_SLOW_CONSUMER: /);
  assert.ok(receivedBytes >= run.accepted * 5, `${receivedBytes} bytes read for ${run.accepted} accepted acks`);
});

test('a peer that reads: every write is accepted and none waits for the drain deadline', { timeout: 30_000 }, async () => {
  const call = openCall();
  let received = 0;
  call.on('data', () => (received += 1));
  while (runs.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  const run = await runs.shift()!;
  assert.equal(run.outcome, undefined);
  assert.equal(run.accepted, ACKS_TO_WRITE);
  const [status] = (await once(call, 'status')) as [grpc.StatusObject];
  assert.equal(status.code, GrpcCode.OK);
  assert.equal(received, ACKS_TO_WRITE);
});

test('a write pending when the peer cancels is refused with ERR_STREAM_CLOSED at once, not at the drain deadline', { timeout: 30_000 }, async () => {
  const stream = openNonReadingCall();
  while (runs.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  // Let the server's writes back up, then cancel before the drain deadline.
  await new Promise((resolve) => setTimeout(resolve, DRAIN_DEADLINE_MS / 4));
  stream.close();
  const run = await runs.shift()!;
  assert.ok(run.outcome instanceof CtOpsError);
  assert.equal(run.outcome.code, 'ERR_STREAM_CLOSED');
  assert.ok(run.stalledForMs < DRAIN_DEADLINE_MS, `the pending write waited ${run.stalledForMs} ms for a cancelled call`);
});
