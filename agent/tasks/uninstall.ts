import { execFile, spawn } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, win32 } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CtOpsError } from '../../common/errors.ts';
import { idPattern } from '../../common/ids.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import type { AgentLogger } from '../log/logger.ts';
import type { TaskHandler, TaskHandlerResult } from './runner.ts';

/**
 * A task id exactly as the appliance makes them (common/ids.ts): it becomes a command-line argument
 * of a script run as root, whose own grammar (tsk_ and letters or digits) it always satisfies.
 */
export const UNINSTALL_TASK_ID = idPattern('tsk');

/** How long the root helper has to answer a request (its path unit reacts within a second). */
export const HELPER_ANSWER_TIMEOUT_MS = 60_000;
const HELPER_POLL_MS = 250;
/** systemd-run --no-block returns once systemd has queued the unit. */
const SYSTEMD_RUN_TIMEOUT_MS = 30_000;

/** Where the root helper's spool and the uninstaller are on this platform (env overrides for tests and odd layouts). */
export function uninstallPaths(platform: NodeJS.Platform, env: NodeJS.ProcessEnv): { spoolDir: string | undefined; uninstaller: string } {
  if (platform === 'win32') {
    // install.ps1 puts uninstall.ps1 beside the agent in %ProgramFiles%\CT-Ops; Windows has no helper.
    return { spoolDir: undefined, uninstaller: env.CT_OPS_UNINSTALLER || win32.join(env.ProgramFiles || 'C:\\Program Files', 'CT-Ops', 'uninstall.ps1') };
  }
  const defaultSpool = platform === 'darwin' ? '/Library/Application Support/CT-Ops/requests' : '/var/lib/ct-ops/requests';
  return { spoolDir: env.CT_OPS_HELPER_REQUESTS_DIR || defaultSpool, uninstaller: env.CT_OPS_UNINSTALLER || '/usr/local/libexec/ct-ops/uninstall.sh' };
}

/** What the launch decision depends on, probed once per task. */
export interface UninstallFacts {
  readonly platform: NodeJS.Platform;
  /** The POSIX user id; undefined on Windows. */
  readonly uid: number | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** The helper's spool is a directory this process may write into. */
  readonly spoolWritable: boolean;
  readonly uninstallerExists: boolean;
  /** systemd is the service manager (/run/systemd/system) and systemd-run is on PATH. */
  readonly systemdRunning: boolean;
}

export type DetachMethod = 'systemd-run' | 'setsid' | 'windows-detached';

export type UninstallPlan =
  | { readonly method: 'helper'; readonly spoolDir: string }
  | { readonly method: DetachMethod; readonly uninstaller: string }
  | { readonly method: 'unavailable'; readonly reason: string };

/**
 * How this agent can start its uninstaller. The root helper comes first: it is the only way
 * for the unprivileged Linux agent, and on macOS it keeps one protocol. An agent running as
 * root (or as LocalSystem on Windows) starts the uninstaller itself, detached from its own
 * service so that stopping the agent cannot stop the uninstaller.
 */
export function planUninstall(facts: UninstallFacts): UninstallPlan {
  const { spoolDir, uninstaller } = uninstallPaths(facts.platform, facts.env);
  if (spoolDir !== undefined && facts.spoolWritable) return { method: 'helper', spoolDir };
  const privileged = facts.platform === 'win32' || facts.uid === 0;
  if (!privileged) {
    return { method: 'unavailable', reason: `the agent runs as uid ${facts.uid ?? 'unknown'}, not root, and the root helper's spool ${spoolDir ?? '(none)'} is missing or not writable` };
  }
  if (!facts.uninstallerExists) return { method: 'unavailable', reason: `no uninstaller at ${uninstaller}` };
  switch (facts.platform) {
    case 'win32':
      return { method: 'windows-detached', uninstaller };
    case 'linux':
      return { method: facts.systemdRunning ? 'systemd-run' : 'setsid', uninstaller };
    case 'darwin':
      return { method: 'setsid', uninstaller };
    default:
      return { method: 'unavailable', reason: `remote uninstall is not supported on ${facts.platform}` };
  }
}

/** The command that starts the uninstaller for a plan; `logPath` receives its output. */
export function launchCommand(plan: { method: DetachMethod; uninstaller: string }, taskId: string, logPath: string, nowMs: number, env: NodeJS.ProcessEnv): { command: string; args: string[] } {
  switch (plan.method) {
    case 'systemd-run':
      // A transient unit of its own: tearing down the agent's cgroup cannot kill it.
      return {
        command: 'systemd-run',
        args: [
          '--no-block', '--collect', '--quiet', `--unit=ct-ops-uninstall-${taskId}-${nowMs}`, '--description=CT-Ops agent uninstall',
          `--property=StandardOutput=append:${logPath}`, `--property=StandardError=append:${logPath}`,
          '/bin/sh', plan.uninstaller, '--report-task', taskId,
        ],
      };
    case 'setsid':
      return { command: '/bin/sh', args: [plan.uninstaller, '--report-task', taskId] };
    case 'windows-detached': {
      // The full path: the agent's PATH must not decide which program runs as LocalSystem.
      const powershell = win32.join(env.SystemRoot || 'C:\\Windows', 'System32', 'WindowsPowerShell', 'v1.0', 'powershell.exe');
      return { command: powershell, args: ['-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', plan.uninstaller, '-ReportTask', taskId] };
    }
  }
}

export interface UninstallTaskDeps {
  readonly log: AgentLogger;
  readonly env?: NodeJS.ProcessEnv;
  readonly helperTimeoutMs?: number;
}

/**
 * agent_uninstall: hands the uninstall to the root helper or to a detached uninstaller, which
 * stops this agent, removes it and reports the outcome itself (`ct-ops-agent report-task`).
 * The task therefore ends here as 'handed-off', never as succeeded.
 */
export function uninstallHandler(deps: UninstallTaskDeps): TaskHandler {
  const env = deps.env ?? process.env;
  return async (task, signal) => {
    const taskId = task.task_id;
    if (!UNINSTALL_TASK_ID.test(taskId)) throw new CtOpsError('ERR_INVALID_ARGUMENT', `task id ${JSON.stringify(taskId.slice(0, 80))} cannot be passed to the uninstaller`);
    const plan = planUninstall(probeFacts(process.platform, process.getuid?.(), env));
    deps.log.info({ task_id: taskId, method: plan.method }, 'uninstall method chosen');
    switch (plan.method) {
      case 'unavailable':
        throw new CtOpsError('ERR_UNINSTALL_UNAVAILABLE', plan.reason);
      case 'helper':
        return askHelper(plan.spoolDir, taskId, signal, deps.log, deps.helperTimeoutMs ?? HELPER_ANSWER_TIMEOUT_MS);
      default:
        return launchDetached(plan, taskId, env, deps.log);
    }
  };
}

function probeFacts(platform: NodeJS.Platform, uid: number | undefined, env: NodeJS.ProcessEnv): UninstallFacts {
  const { spoolDir, uninstaller } = uninstallPaths(platform, env);
  return {
    platform,
    uid,
    env,
    spoolWritable: spoolDir !== undefined && isWritableDirectory(spoolDir),
    uninstallerExists: existsSync(uninstaller),
    systemdRunning: platform === 'linux' && existsSync('/run/systemd/system') && onPath('systemd-run', env),
  };
}

/**
 * The root helper's spool when this process may write requests into it (self-update stages there
 * too); undefined on Windows, or when it is missing, a link, or not writable.
 */
export function writableHelperSpool(platform: NodeJS.Platform, env: NodeJS.ProcessEnv): string | undefined {
  const { spoolDir } = uninstallPaths(platform, env);
  return spoolDir !== undefined && isWritableDirectory(spoolDir) ? spoolDir : undefined;
}

function isWritableDirectory(path: string): boolean {
  try {
    // lstat: a link in place of the spool is not the helper's spool.
    if (!lstatSync(path).isDirectory()) return false;
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(command: string, env: NodeJS.ProcessEnv): boolean {
  return (env.PATH ?? '').split(posix.delimiter).some((dir) => dir !== '' && existsSync(posix.join(dir, command)));
}

/**
 * The helper protocol (docs/install.md, "Privilege model"): clear any old answer, write the
 * request under a temporary name and rename it to `request`, then wait for `result`.
 */
async function askHelper(spoolDir: string, taskId: string, signal: AbortSignal, log: AgentLogger, timeoutMs: number): Promise<TaskHandlerResult> {
  const requestPath = join(spoolDir, 'request');
  const resultPath = join(spoolDir, 'result');
  try {
    rmSync(resultPath, { force: true });
    writeFileAtomic(requestPath, `uninstall ${taskId}\n`, 0o600);
  } catch (error) {
    throw new CtOpsError('ERR_UNINSTALL_UNAVAILABLE', `cannot write the uninstall request into the helper spool ${spoolDir}: ${(error as Error).message}`, { spool: spoolDir }, { cause: error });
  }
  log.info({ task_id: taskId, spool: spoolDir }, 'uninstall requested from the root helper');
  let answer: string | undefined;
  try {
    answer = await waitForAnswer(resultPath, signal, timeoutMs);
  } finally {
    // Not taken yet (cancelled or no helper): withdraw it, so no uninstall starts after the task ended.
    if (answer === undefined) rmSync(requestPath, { force: true });
  }
  if (answer === undefined) {
    throw new CtOpsError('ERR_UNINSTALL_UNAVAILABLE', `the root helper did not answer within ${Math.round(timeoutMs / 1000)} s; is ct-ops-agent-helper.path enabled?`, { spool: spoolDir });
  }
  rmSync(resultPath, { force: true });
  log.info({ task_id: taskId, answer }, 'root helper answered');
  if (answer === 'uninstall ok') return { kind: 'handed-off', message: 'the root helper started the uninstaller; it reports the outcome when it has finished' };
  const reason = answer.startsWith('uninstall refused ') ? answer.slice('uninstall refused '.length) : answer;
  throw new CtOpsError('ERR_UNINSTALL_FAILED', `the root helper refused the uninstall: ${reason}`, { reason });
}

/** The first line of the helper's answer file at `path` once it appears, or undefined after timeoutMs (ms, monotonic). */
export async function waitForAnswer(path: string, signal: AbortSignal, timeoutMs: number): Promise<string | undefined> {
  // Monotonic: a clock set by NTP while the helper works must not end the wait early or stretch it.
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    signal.throwIfAborted();
    const answer = readAnswer(path);
    if (answer !== undefined || performance.now() >= deadline) return answer;
    // An abort ends the sleep early; the check at the top of the loop then throws its reason.
    await sleep(HELPER_POLL_MS, undefined, { signal }).catch(() => undefined);
  }
}

function readAnswer(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').slice(0, 1024).split('\n', 1)[0]?.trim() ?? '';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function launchDetached(plan: { method: DetachMethod; uninstaller: string }, taskId: string, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<TaskHandlerResult> {
  const output = openUninstallLog(plan.method === 'windows-detached', env);
  const { command, args } = launchCommand(plan, taskId, output.path, Date.now(), env);
  let pid: number | undefined;
  try {
    if (plan.method === 'systemd-run') await runSystemdRun(command, args);
    else pid = await startDetached(command, args, output.fd);
  } catch (error) {
    throw new CtOpsError('ERR_UNINSTALL_UNAVAILABLE', `cannot start the uninstaller ${plan.uninstaller} (${plan.method}): ${(error as Error).message}`, { uninstaller: plan.uninstaller }, { cause: error });
  } finally {
    closeSync(output.fd);
  }
  log.info({ task_id: taskId, method: plan.method, uninstaller: plan.uninstaller, pid: pid ?? null, log: output.path }, 'uninstaller started detached');
  return { kind: 'handed-off', message: `the uninstaller was started (${plan.method}; log ${output.path}); it reports the outcome when it has finished` };
}

/**
 * A fresh log that nobody else could have prepared: the fixed name in a folder only
 * administrators write to, created exclusively (no link followed), else a file in a new
 * private temporary folder. Never a predictable name in a shared folder.
 */
function openUninstallLog(windows: boolean, env: NodeJS.ProcessEnv): { path: string; fd: number } {
  const dir = windows ? win32.join(env.SystemRoot || 'C:\\Windows', 'Logs', 'CT-Ops') : '/var/log';
  const path = join(dir, 'ct-ops-uninstall.log');
  try {
    if (windows) mkdirSync(dir, { recursive: true });
    rmSync(path, { force: true });
    return { path, fd: openSync(path, 'wx', 0o600) };
  } catch {
    const fresh = join(mkdtempSync(join(tmpdir(), 'ct-ops-uninstall-')), 'uninstall.log');
    return { path: fresh, fd: openSync(fresh, 'wx', 0o600) };
  }
}

/** Node's detached spawn: setsid() on POSIX, DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP on Windows. */
function startDetached(command: string, args: readonly string[], logFd: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { detached: true, windowsHide: true, stdio: ['ignore', logFd, logFd] });
    child.once('error', reject);
    child.once('spawn', () => {
      child.unref();
      resolve(child.pid);
    });
  });
}

function runSystemdRun(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: SYSTEMD_RUN_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${error.message.split('\n', 1)[0]}${stderr ? `: ${stderr.trim().slice(0, 500)}` : ''}`));
      else resolve();
    });
  });
}
