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

/** One length-delimited protobuf field (wire type 2): tag, length, bytes. Field numbers below 16 only. */
export function lengthDelimited(fieldNumber: number, bytes: Buffer): Buffer {
  if (fieldNumber >= 16 || bytes.length >= 128) throw new Error('lengthDelimited writes one-byte tags and lengths only');
  return Buffer.concat([Buffer.from([(fieldNumber << 3) | 2, bytes.length]), bytes]);
}
