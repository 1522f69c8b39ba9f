import { connect as http2Connect } from 'node:http2';

export interface RawGrpcOutcome {
  /** grpc-status from the headers or trailers, as sent. */
  status: string | undefined;
  /** grpc-message, percent-decoded. */
  message: string | undefined;
}

/**
 * Sends raw gRPC message frames (each body length-prefixed, uncompressed) on one call and ends it;
 * resolves with the status the server answered. For bytes no generated client would encode:
 * malformed protobuf, invalid UTF-8 in a string field.
 */
export function rawGrpcCall(port: number, ca: string, method: string, bodies: readonly Buffer[], headers: Record<string, string> = {}): Promise<RawGrpcOutcome> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://localhost:${port}`, { ca });
    session.on('error', reject);
    const frames = bodies.map((body) => {
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(body.length, 1);
      return Buffer.concat([prefix, body]);
    });
    const stream = session.request({ ':method': 'POST', ':path': `/ctops.ingest.v1.IngestService/${method}`, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    const outcome: RawGrpcOutcome = { status: undefined, message: undefined };
    const take = (received: Record<string, unknown>): void => {
      outcome.status ??= received['grpc-status'] as string | undefined;
      outcome.message ??= received['grpc-message'] === undefined ? undefined : decodeURIComponent(received['grpc-message'] as string);
    };
    stream.on('response', take);
    stream.on('trailers', take);
    stream.on('data', () => undefined);
    stream.on('close', () => {
      session.close();
      resolve(outcome);
    });
    stream.on('error', reject);
    stream.end(Buffer.concat(frames));
  });
}

/** A raw exchange's outcome: the status as sent, or how the call ended without one. */
export interface RawGrpcExchange extends RawGrpcOutcome {
  /** The :status of the response headers (200 for any gRPC answer). */
  httpStatus: number | undefined;
  /** Message frames (length-prefixed) the server sent before its status. */
  framesReceived: number;
  /** No status within the deadline: the call was reset by us. */
  timedOut: boolean;
  /** The stream or session failed (reset, GOAWAY) before a status: its error code. */
  failure: string | undefined;
  /** The size of the request's header list as HTTP/2 counts it (name, value and 32 bytes per field). */
  requestHeaderBytes: number;
}

export interface RawGrpcOptions {
  /** Request headers besides :method, :path, content-type and te; a value here replaces those. */
  headers?: Record<string, string>;
  /** The loopback address to connect from (127.x.y.z), so per-source limits count another source. */
  localAddress?: string;
  /** How long to wait for the status before the call counts as hung (ms). */
  timeoutMs?: number;
  /** false: the request is not ended after the payload, as by a client that stalls (default true). */
  endStream?: boolean;
}

/**
 * Sends `payload` as it is (frames already made, possibly malformed: a lying length prefix, a
 * compression flag, half a frame) as the body of one call to `method`, ends the request, and
 * resolves with what came back within the deadline; never rejects. For fuzzing, where anything may
 * go on the wire and the answer is what is judged.
 */
export function rawGrpcExchange(port: number, ca: string, method: string, payload: Buffer, options: RawGrpcOptions = {}): Promise<RawGrpcExchange> {
  return new Promise((resolve) => {
    const headers = { ':method': 'POST', ':path': `/ctops.ingest.v1.IngestService/${method}`, 'content-type': 'application/grpc', te: 'trailers', ...options.headers };
    const requestHeaderBytes = Object.entries(headers).reduce((sum, [name, value]) => sum + name.length + Buffer.byteLength(value) + 32, 0);
    const outcome: RawGrpcExchange = { status: undefined, message: undefined, httpStatus: undefined, framesReceived: 0, timedOut: false, failure: undefined, requestHeaderBytes };
    const session = http2Connect(`https://localhost:${port}`, { ca, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) });
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      outcome.timedOut = true;
      settle();
    }, options.timeoutMs ?? 10_000);
    session.on('error', (error: NodeJS.ErrnoException) => {
      outcome.failure ??= error.code ?? error.message;
      settle();
    });
    const stream = session.request(headers);
    const take = (received: Record<string, unknown>): void => {
      outcome.httpStatus ??= received[':status'] as number | undefined;
      outcome.status ??= received['grpc-status'] as string | undefined;
      if (outcome.message === undefined && received['grpc-message'] !== undefined) {
        const raw = received['grpc-message'] as string;
        try {
          outcome.message = decodeURIComponent(raw);
        } catch {
          outcome.message = raw;
        }
      }
      // A request left open never sees the stream close: the status is the end.
      if (options.endStream === false && outcome.status !== undefined) settle();
    };
    let body = Buffer.alloc(0);
    stream.on('response', take);
    stream.on('trailers', take);
    stream.on('data', (chunk: Buffer) => {
      body = Buffer.concat([body, chunk]);
      while (body.length >= 5 && body.length >= 5 + body.readUInt32BE(1)) {
        outcome.framesReceived += 1;
        body = body.subarray(5 + body.readUInt32BE(1));
      }
    });
    stream.on('error', (error: NodeJS.ErrnoException) => {
      outcome.failure ??= error.code ?? error.message;
    });
    stream.on('close', settle);
    if (options.endStream === false) stream.write(payload);
    else stream.end(payload);
  });
}

/** One gRPC message frame: the compression flag, the body's length (big-endian) and the body. */
export function grpcFrame(body: Buffer, compressedFlag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt8(compressedFlag, 0);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

/** One length-delimited protobuf field (wire type 2): tag, length, bytes. Field numbers below 16 only. */
export function lengthDelimited(fieldNumber: number, bytes: Buffer): Buffer {
  if (fieldNumber >= 16 || bytes.length >= 128) throw new Error('lengthDelimited writes one-byte tags and lengths only');
  return Buffer.concat([Buffer.from([(fieldNumber << 3) | 2, bytes.length]), bytes]);
}
