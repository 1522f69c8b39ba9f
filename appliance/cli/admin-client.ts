import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { catalogueCodeOf, CtOpsError, errorCodeOf } from '../../common/errors.ts';
import { CA_CERT_FILE, CLI_CREDENTIAL_FILE, ENDPOINT_FILE } from '../lib/data-dir-files.ts';
import { readTrustedCaPems } from '../lib/trusted-cas.ts';

/** Calls the appliance's admin API with the local admin credential found in the data directory. */
export class AdminClient {
  readonly #baseUrl: URL;
  readonly #ca: string;
  readonly #credential: string;
  readonly #timeoutMs: number;

  /** `timeoutMs`: how long a call may stay silent (default 15 s; a bundle build answers only when built). */
  constructor(dataDir: string, options: { readonly timeoutMs?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 15_000;
    const read = (name: string, reader = (path: string) => readFileSync(path, 'utf8')): string => {
      try {
        return reader(join(dataDir, name));
      } catch (cause) {
        throw new CtOpsError('ERR_APPLIANCE_UNREACHABLE', `cannot read ${join(dataDir, name)}: is --data-dir the appliance's data directory, and has it started once?`, { path: join(dataDir, name) }, { cause });
      }
    };
    const endpoint = JSON.parse(read(ENDPOINT_FILE)) as { admin_api: string };
    this.#baseUrl = new URL(endpoint.admin_api);
    // With the next CA during a rotation: once switched, the appliance serves a certificate of that CA.
    this.#ca = read(CA_CERT_FILE, () => readTrustedCaPems(dataDir));
    this.#credential = read(CLI_CREDENTIAL_FILE).trim();
  }

  /** A JSON call; rejects with the catalogue code the API answered (ERR_INTERNAL when it names none). */
  async call<T>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
    return (await this.callWithHeaders<T>(method, path, body)).value;
  }

  /** A JSON call as `call`, with the answer's headers (a page's `x-next-cursor`). */
  async callWithHeaders<T>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<{ value: T; headers: IncomingHttpHeaders }> {
    const { status, bytes, headers } = await this.#send(method, path, 'application/json', body === undefined ? undefined : { json: body });
    if (status >= 400) throwApiError(status, bytes);
    return { value: parseJsonAnswer(status, bytes) as T, headers };
  }

  /**
   * A POST of `body` streamed as `contentType` (a release archive), answered with JSON as `call`
   * answers; `body` is read as the request is written, never whole into memory.
   */
  async upload<T>(path: string, contentType: string, body: Readable): Promise<T> {
    const { status, bytes } = await this.#send('POST', path, 'application/json', { contentType, stream: body });
    if (status >= 400) throwApiError(status, bytes);
    return parseJsonAnswer(status, bytes) as T;
  }

  /** A GET of a file (a bundle zip): its bytes, or the API's error as `call` rejects. */
  async download(path: string): Promise<Buffer> {
    const { status, bytes } = await this.#send('GET', path, 'application/zip, application/json');
    if (status >= 400) throwApiError(status, bytes);
    return bytes;
  }

  /**
   * A GET whose answer (JSON lines of an export) is piped to `sink` as it arrives, never held whole;
   * resolves once all of it was written. An error answer rejects as `call` does, a broken-off answer
   * with ERR_APPLIANCE_UNREACHABLE.
   */
  async streamTo(path: string, accept: string, sink: Writable): Promise<void> {
    const response = await this.#open('GET', path, accept);
    if ((response.statusCode ?? 500) >= 400) {
      const { status, bytes } = await this.#read(response);
      throwApiError(status, bytes);
    }
    try {
      await pipeline(response, sink, { end: false });
    } catch (cause) {
      // The reader of the output went away (`| head`): nothing more to write, and nothing wrong.
      if (errorCodeOf(cause) === 'EPIPE') return;
      throw this.#brokeOff(cause as Error);
    }
  }

  async #send(method: string, path: string, accept: string, body?: { json: unknown } | { contentType: string; stream: Readable }): Promise<{ status: number; bytes: Buffer; headers: IncomingHttpHeaders }> {
    return this.#read(await this.#open(method, path, accept, body));
  }

  /** The whole of an answer. */
  #read(response: IncomingMessage): Promise<{ status: number; bytes: Buffer; headers: IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 500, bytes: Buffer.concat(chunks), headers: response.headers }));
      response.on('error', (cause) => reject(this.#brokeOff(cause)));
    });
  }

  #brokeOff(cause: Error): CtOpsError {
    return new CtOpsError('ERR_APPLIANCE_UNREACHABLE', `the admin API at ${this.#baseUrl.origin} broke off its answer: ${cause.message}`, {}, { cause });
  }

  /** Sends a request; resolves with the answer once its headers arrived. */
  #open(method: string, path: string, accept: string, body?: { json: unknown } | { contentType: string; stream: Readable }): Promise<IncomingMessage> {
    const streamed = body !== undefined && 'stream' in body ? body : undefined;
    const url = new URL(path, this.#baseUrl);
    // A path the server sent (a bundle's download link) must not carry the admin credential elsewhere.
    if (url.origin !== this.#baseUrl.origin) {
      return Promise.reject(new CtOpsError('ERR_INTERNAL', `the admin API named a link outside ${this.#baseUrl.origin}; not following it`));
    }
    const payload = body !== undefined && 'json' in body ? Buffer.from(JSON.stringify(body.json)) : undefined;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          ca: this.#ca,
          checkServerIdentity: applianceServerIdentity,
          headers: {
            authorization: `Bearer ${this.#credential}`,
            accept,
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
            ...(streamed ? { 'content-type': streamed.contentType } : {}),
          },
          timeout: this.#timeoutMs,
        },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (cause) => reject(new CtOpsError('ERR_APPLIANCE_UNREACHABLE', `cannot reach the admin API at ${this.#baseUrl.origin}: ${cause.message}`, {}, { cause })));
      if (!streamed) return void req.end(payload);
      // The answer may come before the whole body was sent (a refusal at the first bad header): it is still read.
      streamed.stream.on('error', (cause) => req.destroy(cause));
      streamed.stream.pipe(req);
    });
  }
}

/** Extended key usage id-kp-serverAuth (RFC 5280 4.2.1.12). */
const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';

/**
 * The admin API is trusted when it presents a server certificate of this appliance's own CA, whatever
 * names it holds (decision 106). The endpoint file names a loopback address, which the configured
 * SANs need not include (`--san appliance.corp.example`), and a `certs rotate-server` may change them
 * while the CLI runs. The CA is pinned (`ca` is only the data directory's CA, never the system's) and
 * issues nothing but the appliance's server certificates, so the chain is the identity; the serverAuth
 * usage is checked as well, so a future certificate of another kind from this CA would not pass.
 */
function applianceServerIdentity(_host: string, cert: PeerCertificate): Error | undefined {
  const usages = (cert as PeerCertificate & { ext_key_usage?: string[] }).ext_key_usage;
  return usages?.includes(SERVER_AUTH_OID) ? undefined : new Error("the admin API's certificate is not a server certificate of the appliance's CA");
}

/** A JSON answer's body (undefined when empty); ERR_INTERNAL when it is not JSON. */
function parseJsonAnswer(status: number, bytes: Buffer): unknown {
  const text = bytes.toString('utf8');
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    throw new CtOpsError('ERR_INTERNAL', `the admin API answered ${status} with a body that is not JSON`);
  }
}

/**
 * Throws an error answer (status >= 400) of any call, JSON or download, as a CtOpsError: the code
 * and message of its body `{ error: { code, message } }`; ERR_INTERNAL when the body names no
 * catalogue code or is not JSON.
 */
function throwApiError(status: number, bytes: Buffer): never {
  const error = (parseJsonAnswer(status, bytes) as { error?: { code?: unknown; message?: string } } | undefined)?.error;
  throw new CtOpsError(catalogueCodeOf(error) ?? 'ERR_INTERNAL', error?.message ?? `HTTP ${status}`);
}
