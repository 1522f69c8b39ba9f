import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APPLIANCE_BIN, LoggedProcess, run } from './processes.ts';

export interface ApplianceOptions {
  dataDir?: string;
  grpcPort?: number;
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** The working directory (default: the test's). */
  cwd?: string;
  /** The --san flags (default localhost, 127.0.0.1); [] leaves the SANs to a config file in `args`. */
  sans?: readonly string[];
  /** The appliance script (default: this checkout's dist/ct-ops-appliance.js); the development release key is looked up in .dev-keys/ at its package root. */
  bin?: string;
}

/** A real appliance process on loopback with its own data directory. */
export class TestAppliance {
  readonly dataDir: string;
  readonly process: LoggedProcess;
  grpcPort = 0;
  httpPort = 0;
  #ownsDataDir: boolean;

  private constructor(dataDir: string, ownsDataDir: boolean, proc: LoggedProcess) {
    this.dataDir = dataDir;
    this.#ownsDataDir = ownsDataDir;
    this.process = proc;
  }

  static async start(options: ApplianceOptions = {}): Promise<TestAppliance> {
    const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'ct-ops-appliance-'));
    const args = [
      options.bin ?? APPLIANCE_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1',
      '--grpc-port', String(options.grpcPort ?? 0), '--http-port', '0',
      ...(options.sans ?? ['localhost', '127.0.0.1']).flatMap((name) => ['--san', name]), '--pending-poll-secs', '1',
      ...(options.args ?? []),
    ];
    const appliance = new TestAppliance(dataDir, options.dataDir === undefined, new LoggedProcess(process.execPath, args, { CT_OPS_APPLIANCE_LOG_LEVEL: 'debug', ...options.env }, options.cwd));
    let started;
    try {
      started = await appliance.process.waitForLog('appliance started');
    } catch (error) {
      await appliance.dispose();
      throw error;
    }
    appliance.grpcPort = started.grpc_port as number;
    appliance.httpPort = started.http_port as number;
    // An appliance that dies by itself says why in the test's output (the test then fails on ECONNREFUSED).
    void appliance.process.exited.then(({ code }) => {
      if (code === null || code === 0) return;
      const errors = appliance.process.events.filter((event) => (event.level ?? 0) >= 50).slice(-5);
      console.error(`the appliance of ${dataDir} exited ${code}; its last errors: ${JSON.stringify(errors)}; stderr: ${appliance.process.stderr.slice(-4_000)}`);
    });
    return appliance;
  }

  get caCertPath(): string {
    return join(this.dataDir, 'ca.crt');
  }

  get caCert(): string {
    return readFileSync(this.caCertPath, 'utf8');
  }

  get address(): string {
    return `localhost:${this.grpcPort}`;
  }

  /** Runs the admin CLI against this appliance. */
  async cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return run(process.execPath, [APPLIANCE_BIN, ...args, '--data-dir', this.dataDir]);
  }

  /** Runs the admin CLI with --json and returns the parsed output; fails on a non-zero exit. */
  async cliJson<T = Record<string, unknown>>(...args: string[]): Promise<T> {
    const result = await this.cli(...args, '--json');
    if (result.code !== 0) throw new Error(`ct-ops-appliance ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return JSON.parse(result.stdout) as T;
  }

  async createToken(...flags: string[]): Promise<{ id: string; token: string }> {
    return this.cliJson<{ id: string; token: string }>('tokens', 'create', ...flags);
  }

  async hosts(): Promise<Array<Record<string, unknown> & { id: string; hostname: string; status: string }>> {
    return this.cliJson('hosts', 'list');
  }

  async host(id: string): Promise<Record<string, unknown> & { status: string }> {
    return this.cliJson('hosts', 'show', id);
  }

  async stop(): Promise<void> {
    await this.process.stop();
  }

  /** Stops the process and removes the data directory it created. */
  async dispose(): Promise<void> {
    await this.process.stop('SIGKILL');
    if (this.#ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
