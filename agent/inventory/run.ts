import { execFile, type ExecFileException } from 'node:child_process';
import { InventoryError } from './errors.ts';

export interface CommandLimits {
  /** Milliseconds before the command is killed and the collection fails with ERR_INVENTORY_TIMEOUT. */
  readonly timeoutMs: number;
  /** Bytes of stdout (or stderr) beyond which the command is killed: ERR_INVENTORY_OUTPUT_TOO_LARGE. */
  readonly maxOutputBytes: number;
  /** Aborting kills the command and rejects with the signal's reason (an admin cancelled the task). */
  readonly signal?: AbortSignal;
}

export interface CommandSpec {
  readonly command: string;
  readonly args: readonly string[];
  /** Added to the inherited environment after LC_ALL=C. */
  readonly env?: Readonly<Record<string, string>>;
  /** Run as this user (the agent runs as root; Homebrew refuses to). */
  readonly uid?: number;
  readonly gid?: number;
}

/** The tool (or its database file) is not on this host: the caller tries the next collector. */
export const NOT_AVAILABLE = Symbol('not-available');

export type RunCommand = (spec: CommandSpec) => Promise<string | typeof NOT_AVAILABLE>;

const STDERR_EXCERPT_CHARS = 500;

/**
 * Runs one tool without a shell, in the C locale so its output has a stable format, and
 * returns its stdout as UTF-8. A missing executable is NOT_AVAILABLE; every other
 * failure (non-zero exit, signal, timeout, output over the cap) is an InventoryError.
 */
export function runCommand(spec: CommandSpec, limits: CommandLimits): Promise<string | typeof NOT_AVAILABLE> {
  const source = spec.command;
  if (limits.timeoutMs <= 0) return Promise.reject(timedOut(source, 0));
  return new Promise((resolve, reject) => {
    const child = execFile(
      spec.command,
      spec.args,
      {
        encoding: 'buffer',
        env: { ...process.env, LC_ALL: 'C', ...spec.env },
        timeout: limits.timeoutMs,
        maxBuffer: limits.maxOutputBytes,
        killSignal: 'SIGKILL',
        windowsHide: true,
        uid: spec.uid,
        gid: spec.gid,
        signal: limits.signal,
      },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout.toString('utf8'));
        if (limits.signal?.aborted) return reject(limits.signal.reason);
        const outcome = classify(error, spec, limits, stderr.toString('utf8'));
        if (outcome === NOT_AVAILABLE) resolve(outcome);
        else reject(outcome);
      },
    );
    child.stdin?.end();
  });
}

function classify(error: ExecFileException, spec: CommandSpec, limits: CommandLimits, stderr: string): InventoryError | typeof NOT_AVAILABLE {
  const source = spec.command;
  const code: unknown = error.code;
  if (code === 'ENOENT') return NOT_AVAILABLE;
  if (code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
    return new InventoryError('ERR_INVENTORY_OUTPUT_TOO_LARGE', `${source} printed more than ${limits.maxOutputBytes} bytes`, { source, max_output_bytes: limits.maxOutputBytes }, { cause: error });
  }
  // execFile kills the child itself only when the timeout fires (the cap is handled above).
  if (error.killed) return timedOut(source, limits.timeoutMs, error);
  const excerpt = stderr.trim().slice(0, STDERR_EXCERPT_CHARS);
  const how = typeof code === 'number' ? `exited with status ${code}` : error.signal ? `was killed by ${error.signal}` : `could not be run (${String(code)})`;
  return new InventoryError(
    'ERR_INVENTORY_COLLECTOR_FAILED',
    `${[spec.command, ...spec.args].join(' ')} ${how}${excerpt ? `: ${excerpt}` : ''}`,
    { source, exit_code: typeof code === 'number' ? code : null, signal: error.signal ?? null, stderr: excerpt },
    { cause: error },
  );
}

function timedOut(source: string, timeoutMs: number, cause?: unknown): InventoryError {
  return new InventoryError('ERR_INVENTORY_TIMEOUT', `${source} did not finish within the inventory time limit (${timeoutMs} ms)`, { source, timeout_ms: timeoutMs }, { cause });
}
