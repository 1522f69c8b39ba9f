import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { isIP } from 'node:net';
import { CtOpsError } from '../../common/errors.ts';

/** Where and how to fetch one file of an offered release. */
export interface DownloadSource {
  /** The appliance's host as in the ingest address the agent streams to (its certificate names it). */
  readonly host: string;
  readonly port: number;
  /** The file's path on the HTTPS port (the offer's download_path + the file name). */
  readonly path: string;
  /** The agent's JWT, sent as Bearer token. */
  readonly jwt: string;
  /** The CAs trusted for the appliance's TLS (the agent's trust now); undefined: the system roots. */
  readonly caPem: string | undefined;
}

/** How long a download may stay silent before it is cut and retried (resuming) later. */
const DOWNLOAD_IDLE_TIMEOUT_MS = 60_000;

/**
 * Fetches `source` into `destination`, resuming a partial file left there by an earlier attempt
 * (Range: bytes=N-, RFC 9110 14.2; a 200 answer starts the file over), and stops at `maxBytes`.
 * Resolves when the file holds the whole body. Throws ERR_UPDATE_TOO_LARGE when the body would pass
 * `maxBytes` (the partial file is removed), ERR_DOWNLOAD_BUSY with `retryAfterMs` when the appliance
 * turned the download away (503), and ERR_UPDATE_DOWNLOAD_FAILED for anything else (the partial file
 * is kept, so the next attempt resumes). A 416 (the partial file is longer than the file served)
 * removes the partial file and fails, so the next attempt starts over.
 */
export async function downloadResuming(source: DownloadSource, destination: string, maxBytes: number, signal: AbortSignal): Promise<void> {
  const have = (await stat(destination).catch(() => undefined))?.size ?? 0;
  if (have > maxBytes) await rm(destination, { force: true });
  const from = have > maxBytes ? 0 : have;
  await new Promise<void>((resolve, reject) => {
    const failed = (message: string, cause?: unknown): void => reject(new CtOpsError('ERR_UPDATE_DOWNLOAD_FAILED', `${source.path}: ${message}`, {}, cause === undefined ? undefined : { cause }));
    const req = request(
      {
        host: source.host,
        port: source.port,
        path: source.path,
        method: 'GET',
        ca: source.caPem,
        // SNI carries names only (RFC 6066 3); the certificate is checked against `host` either way.
        servername: isIP(source.host) === 0 ? source.host : '',
        headers: { authorization: `Bearer ${source.jwt}`, ...(from > 0 ? { range: `bytes=${from}-` } : {}) },
        timeout: DOWNLOAD_IDLE_TIMEOUT_MS,
        signal,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status === 503) {
          res.resume();
          const retryAfterSecs = Number(res.headers['retry-after']);
          return reject(Object.assign(new CtOpsError('ERR_DOWNLOAD_BUSY', 'the appliance serves as many downloads as it allows'), { retryAfterMs: Number.isFinite(retryAfterSecs) ? retryAfterSecs * 1000 : undefined }));
        }
        if (status === 416) {
          res.resume();
          void rm(destination, { force: true }).then(() => failed('the partial download is longer than the file; starting over'));
          return;
        }
        if (status !== 200 && status !== 206) {
          res.resume();
          return failed(`HTTP ${status}`);
        }
        // 200: the whole file (the server ignored the range, or there was none): start it over.
        const start = status === 206 ? from : 0;
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && start + declared > maxBytes) {
          res.resume();
          void rm(destination, { force: true }).then(() =>
            reject(new CtOpsError('ERR_UPDATE_TOO_LARGE', `${source.path} is ${start + declared} bytes, more than the ${maxBytes} offered`)),
          );
          return;
        }
        const output = createWriteStream(destination, { flags: status === 206 ? 'a' : 'w', mode: 0o600 });
        let written = start;
        res.on('data', (chunk: Buffer) => {
          written += chunk.length;
          if (written > maxBytes) {
            res.destroy();
            output.destroy();
            void rm(destination, { force: true }).then(() => reject(new CtOpsError('ERR_UPDATE_TOO_LARGE', `${source.path} went past the ${maxBytes} bytes offered`)));
          }
        });
        res.on('error', (cause) => failed(`the answer broke off: ${cause.message}`, cause));
        output.on('error', (cause) => failed(`cannot write ${destination}: ${cause.message}`, cause));
        output.on('close', () => (written <= maxBytes && res.complete ? resolve() : failed('the answer ended early')));
        res.pipe(output);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`silent for ${DOWNLOAD_IDLE_TIMEOUT_MS} ms`)));
    req.on('error', (cause) => failed(cause.message, cause));
    req.end();
  });
}
