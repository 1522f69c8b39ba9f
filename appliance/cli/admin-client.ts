import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError, isErrorCode } from '../../common/errors.ts';
import { CA_CERT_FILE, CLI_CREDENTIAL_FILE, ENDPOINT_FILE } from '../lib/data-dir-files.ts';
import { readTrustedCaPems } from '../lib/trusted-cas.ts';

/** Calls the appliance's admin API with the local admin credential found in the data directory. */
export class AdminClient {
  readonly #baseUrl: URL;
  readonly #ca: string;
  readonly #credential: string;

  constructor(dataDir: string) {
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

  async call<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.#baseUrl);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          ca: this.#ca,
          // The endpoint file names the loopback address; the server certificate names it among its SANs.
          headers: {
            authorization: `Bearer ${this.#credential}`,
            accept: 'application/json',
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          },
          timeout: 15_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              reject(new CtOpsError('ERR_INTERNAL', `the admin API answered ${res.statusCode} with a body that is not JSON`));
              return;
            }
            if ((res.statusCode ?? 500) >= 400) {
              const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
              const code = isErrorCode(error?.code) ? error.code : 'ERR_INTERNAL';
              reject(new CtOpsError(code, error?.message ?? `HTTP ${res.statusCode}`));
              return;
            }
            resolve(parsed as T);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (cause) => reject(new CtOpsError('ERR_APPLIANCE_UNREACHABLE', `cannot reach the admin API at ${this.#baseUrl.origin}: ${cause.message}`, {}, { cause })));
      req.end(payload);
    });
  }
}
