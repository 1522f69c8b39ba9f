import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { StopWaiting, waitFor } from './wait.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const APPLIANCE_BIN = `${REPO_ROOT}dist/ct-ops-appliance.js`;
export const AGENT_BIN = `${REPO_ROOT}dist/ct-ops-agent.cjs`;
export const BUNDLE_BIN = `${REPO_ROOT}dist/ct-ops-bundle.js`;

export type LogEvent = Record<string, unknown> & { msg?: string; level?: number };

/** A child process whose stdout is parsed as JSON log lines (non-JSON lines are kept as text). */
export class LoggedProcess {
  readonly child: ChildProcess;
  readonly events: LogEvent[] = [];
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}, cwd?: string) {
    this.child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd === undefined ? {} : { cwd }) });
    let partial = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        try {
          this.events.push(JSON.parse(line) as LogEvent);
        } catch {
          // Not a log event (e.g. a banner line): kept in stdout only.
        }
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = once(this.child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Events with this msg, optionally matching some fields. */
  logged(msg: string, fields: Record<string, unknown> = {}): LogEvent[] {
    return this.events.filter((event) => event.msg === msg && Object.entries(fields).every(([key, value]) => event[key] === value));
  }

  async waitForLog(msg: string, fields: Record<string, unknown> = {}, timeoutMs = 15_000, count = 1): Promise<LogEvent> {
    return waitFor(`log "${msg}" ×${count}`, () => {
      if (!this.running && this.logged(msg, fields).length < count) throw new StopWaiting(`process exited (${this.child.exitCode ?? this.child.signalCode}); stderr: ${this.stderr.slice(-2000)}`);
      return this.logged(msg, fields)[count - 1];
    }, timeoutMs);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) {
      this.child.kill(signal);
      const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      try {
        return await this.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return this.exited;
  }
}

/** Runs a command to completion. */
export async function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = new LoggedProcess(command, args, env);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  const { code } = await proc.exited;
  clearTimeout(timer);
  // Let the stream 'data' handlers drain.
  await new Promise((resolve) => setImmediate(resolve));
  return { code, stdout: proc.stdout, stderr: proc.stderr };
}

/**
 * The real linux-x64 agent executable of this version (dist/agents/<version>/), built first when
 * missing (about 30 s; signed with the development release key an appliance from this clone trusts).
 */
export async function linuxX64Executable(): Promise<string> {
  const { version } = JSON.parse(await readFile(`${REPO_ROOT}package.json`, 'utf8')) as { version: string };
  const executable = `${REPO_ROOT}dist/agents/${version}/ct-ops-agent-linux-x64`;
  if (!existsSync(executable)) {
    const built = await run(process.execPath, ['--import', 'tsx', `${REPO_ROOT}scripts/build-agents.mjs`, '--target', 'linux-x64', '--no-bundle'], {}, 300_000);
    if (built.code !== 0) throw new Error(`build:agents failed (${built.code}): ${built.stderr.slice(-2000)}`);
  }
  return executable;
}

/**
 * A signed linux-x64 agent release of `version` other than this checkout's (the agent bundled again
 * reporting it: build-agents --release-version), for self-update tests: the release folder
 * dist/test-releases/<version>/, built when missing (a few seconds once the base binary is cached),
 * signed with the development release key an appliance from this clone trusts.
 */
export async function linuxX64ReleaseOf(version: string): Promise<string> {
  const dir = `${REPO_ROOT}dist/test-releases/${version}`;
  // Built again whenever the agent changed (npm run build made another dist/ct-ops-agent.cjs): a
  // release of older code would test the swap with an agent that is no longer ours.
  const stamp = `${REPO_ROOT}dist/test-releases/.${version}.built-from`;
  const current = createHash('sha256').update(readFileSync(`${REPO_ROOT}dist/ct-ops-agent.cjs`)).digest('hex');
  if (!existsSync(`${dir}/ct-ops-agent-linux-x64`) || !existsSync(stamp) || readFileSync(stamp, 'utf8') !== current) {
    const built = await run(process.execPath, ['--import', 'tsx', `${REPO_ROOT}scripts/build-agents.mjs`, '--target', 'linux-x64', '--no-bundle', '--release-version', version, '--out-dir', `${REPO_ROOT}dist/test-releases`], {}, 300_000);
    if (built.code !== 0) throw new Error(`build:agents --release-version ${version} failed (${built.code}): ${built.stderr.slice(-2000)}`);
    writeFileSync(stamp, current);
  }
  return dir;
}
