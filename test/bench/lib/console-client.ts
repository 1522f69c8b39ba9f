/**
 * The console as the benches load it (bench:console, bench:inventory-fleet): a logged-in client on one
 * kept-alive HTTPS connection, and a page's server time (Server-Timing app;dur) and wall time over
 * repeated loads.
 */
import { rmSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'node:https';
import { performance } from 'node:perf_hooks';
import { cpuSeconds } from '../../../loadtest/lib/proc.ts';
import { distribution, type Distribution } from '../../../loadtest/lib/stats.ts';
import type { TestAppliance } from '../../helpers/appliance.ts';

export const WARM_UPS = 3;
export const LOADS = 20;

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  wallMs: number;
}

/** A browser's cookie jar and one kept-alive HTTPS connection to the console, as far as the bench needs them. */
export class ConsoleClient {
  readonly #cookies = new Map<string, string>();
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 1 });
  readonly #port: number;
  readonly #ca: string;

  constructor(port: number, ca: string) {
    this.#port = port;
    this.#ca = ca;
  }

  call(method: 'GET' | 'POST', path: string, form?: Record<string, string>): Promise<Answer> {
    const body = form && new URLSearchParams(form).toString();
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const sent = request(
        {
          host: '127.0.0.1', port: this.#port, method, path, ca: this.#ca, agent: this.#agent,
          headers: { cookie: [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; '), ...(body !== undefined && { 'content-type': 'application/x-www-form-urlencoded' }) },
        },
        (response) => {
          for (const line of response.headers['set-cookie'] ?? []) {
            const [name = '', value = ''] = line.split(';', 1)[0]!.split('=');
            if (/max-age=0/i.test(line)) this.#cookies.delete(name);
            else this.#cookies.set(name, value);
          }
          let text = '';
          response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text, wallMs: performance.now() - started }));
        },
      );
      sent.on('error', reject);
      sent.end(body);
    });
  }

  /** Posts a form with the CSRF token of the page at `formPath` (its body's hx-headers); expects a 303 to `expected`. */
  async submit(formPath: string, action: string, fields: Record<string, string>, expected: string): Promise<void> {
    const page = await this.call('GET', formPath);
    const token = /x-csrf-token(?:&quot;|")\s*:\s*(?:&quot;|")([^"&]+)/.exec(page.text)?.[1];
    if (token === undefined) throw new Error(`no CSRF token on ${formPath} (${page.status})`);
    const answer = await this.call('POST', action, { ...fields, _csrf: token });
    if (answer.status !== 303 || answer.headers.location !== expected) throw new Error(`POST ${action}: ${answer.status} to ${answer.headers.location}, expected 303 to ${expected}`);
  }

  close(): void {
    this.#agent.destroy();
  }
}

export interface PageFigures {
  label: string;
  path: string;
  serverMs: Distribution;
  wallMs: Distribution;
  bytes: number;
  /** The appliance's CPU time (user + system) per measured load, in ms: what other processes' load inflates least. */
  cpuMsPerLoad: number;
  /** "Hosts 1–50 of N": N, for the lists. */
  matching?: number;
}

/** Loads `path` WARM_UPS times unmeasured, then LOADS times measured; throws unless each answers 200 with a Server-Timing. */
export async function measurePage(client: ConsoleClient, pid: number, label: string, path: string): Promise<PageFigures> {
  const server: number[] = [];
  const wall: number[] = [];
  let last: Answer | undefined;
  let cpuStarted = 0;
  for (let load = 0; load < WARM_UPS + LOADS; load += 1) {
    if (load === WARM_UPS) cpuStarted = cpuSeconds(pid);
    const answer = await client.call('GET', path);
    const timing = /app;dur=([\d.]+)/.exec(String(answer.headers['server-timing']))?.[1];
    if (answer.status !== 200 || timing === undefined) throw new Error(`GET ${path}: ${answer.status}, Server-Timing ${String(answer.headers['server-timing'])}`);
    if (load < WARM_UPS) continue;
    server.push(Number(timing));
    wall.push(answer.wallMs);
    last = answer;
  }
  const cpuMsPerLoad = ((cpuSeconds(pid) - cpuStarted) * 1000) / LOADS;
  const matching = /Hosts [\d,]+–[\d,]+ of ([\d,]+)/.exec(last!.text)?.[1];
  return { label, path, serverMs: distribution(server), wallMs: distribution(wall), bytes: Buffer.byteLength(last!.text), cpuMsPerLoad, ...(matching !== undefined && { matching: Number(matching.replaceAll(',', '')) }) };
}

/**
 * A client logged in to the freshly started `appliance` as its first admin: the one-time password it
 * printed, then changed to `password` (the console lets nothing else through before).
 */
export async function firstAdminClient(appliance: TestAppliance, password: string): Promise<ConsoleClient> {
  const oneTime = /password: (\S+)/.exec(appliance.process.stderr)?.[1];
  if (oneTime === undefined) throw new Error(`the appliance printed no one-time password; stderr: ${appliance.process.stderr.slice(-2000)}`);
  const client = new ConsoleClient(appliance.httpPort, appliance.caCert);
  try {
    await client.submit('/console/login', '/console/login', { username: 'admin', password: oneTime }, '/console/password');
    await client.submit('/console/password', '/console/password', { current_password: oneTime, new_password: password }, '/console/');
  } catch (error) {
    client.close();
    throw error;
  }
  return client;
}

export const ms = (value: number): string => (Number.isFinite(value) ? value.toFixed(1) : '–');
export const spread = (d: Distribution): string => `${ms(d.p50)} / ${ms(d.p95)} / ${ms(d.max)}`;

/** Writes `value` as one JSON line on stdout, fractions rounded to tenths (the figures' precision). */
export function writeJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_key, field: unknown) => (typeof field === 'number' && !Number.isInteger(field) ? Math.round(field * 10) / 10 : field))}\n`);
}

/** Ends a bench's run on its appliance: the client closed, the appliance stopped, its data in `dir` removed unless `keep` (BENCH_KEEP=1). */
export async function endConsoleRun(run: { client: ConsoleClient | undefined; appliance: TestAppliance | undefined; dir: string; keep: boolean; progress: (message: string) => void }): Promise<void> {
  run.client?.close();
  await run.appliance?.stop();
  if (run.keep) run.progress(`kept ${run.dir}`);
  else rmSync(run.dir, { recursive: true, force: true });
}
