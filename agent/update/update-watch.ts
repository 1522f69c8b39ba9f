import { execFile, spawn } from 'node:child_process';
import { copyFile, lstat, mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, win32 } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { sha256File } from '../../bundler/lib/sha256sums.ts';
import type { PublicKey } from '../../common/minisign.ts';
import { compareVersions, isReleaseVersion, MAX_RELEASE_FILE_BYTES, MAX_SIGNATURE_BYTES, MAX_SUMS_BYTES, RELEASE_SIGNATURE_FILE, RELEASE_SUMS_FILE } from '../../common/release-version.ts';
import type { AgentLogger } from '../log/logger.ts';
import { signedRelease } from './verify.ts';

/*
 * Windows' counterpart of the root helper's `update` request (installers/ct-ops-agent-helper.sh):
 * the agent service runs as LocalSystem, so there is no privilege boundary to cross, but the
 * watcher that decides a rollback must still not be the new binary nor die with the service
 * (issue 12). The agent stages the release in its spool as on Linux, copies its own executable to
 * ct-ops-agent.previous.exe (the binary a rollback restores) and starts that copy as
 * `update-watch`, outside the service's process tree: WinSW ends the agent's child processes when
 * the service stops (it walks Win32_Process.ParentProcessId), so the copy starts itself once more
 * and exits, leaving an orphan no walk from the agent finds. The watcher verifies the staged
 * release again, swaps the executable (the service stopped: a running .exe cannot be replaced),
 * starts the service through the Service Control Manager and gates it as the helper does: the new
 * agent must write its version into <spool>/streaming within STREAM_WITHIN and then keep its
 * process for SETTLE; otherwise the previous executable is put back and started, and the answer in
 * <spool>/result ("update ok V" / "update refused R" / "update rolled-back R", the helper's words)
 * is what the restored or new agent reports.
 */

/** The Windows service the watcher restarts (installers/install.ps1, windows/ct-ops-agent-service.xml). */
export const WINDOWS_SERVICE = 'ct-ops-agent';
/** The defaults of the health gate, as the root helper's (CT_OPS_UPDATE_STREAM_WITHIN_SECS, CT_OPS_UPDATE_SETTLE_SECS). */
const STREAM_WITHIN_SECS = 120;
const SETTLE_SECS = 300;
/** How long a stop may take before the watcher gives up on it (WinSW's stoptimeout is 20 s). */
const STOP_WAIT_MS = 60_000;
/** How long the watcher keeps starting the service until it runs (a stop still pending refuses a start). */
const ENSURE_RUNNING_MS = 5 * 60_000;
/** Attempts at putting the previous executable back, RETRY_MS apart (the service manager may restart the failed agent meanwhile). */
const RESTORE_ATTEMPTS = 10;
const RETRY_MS = 3_000;

/** The service as the watcher drives it. */
export interface ServiceControl {
  /** Stops the service and resolves once it is stopped (or was not running). */
  stop(): Promise<void>;
  /** Starts it; rejects when the service manager refuses. */
  start(): Promise<void>;
  /** The process id of the running service, or undefined when it does not run. */
  runningPid(): Promise<number | undefined>;
}

export interface UpdateWatchOptions {
  readonly spool: string;
  /** The folder of ct-ops-agent.exe and ct-ops-agent.previous.exe. */
  readonly installDir: string;
  /** The executable's name there. */
  readonly agentExecutable: string;
  /** The kept previous executable's name there (a copy of the running agent, made before the watcher starts). */
  readonly previousExecutable: string;
  /** This host's release file name (ct-ops-agent-windows-<arch>.exe). */
  readonly releaseFileName: string;
  /** The installed (running, old) version: the watcher is a copy of it. */
  readonly installedVersion: string;
  readonly releaseKey: PublicKey | undefined;
  readonly service: ServiceControl;
  readonly streamWithinMs: number;
  readonly settleMs: number;
  readonly log: AgentLogger;
  /** How often the streaming marker and the service are looked at (ms). */
  readonly pollMs?: number;
}

/** A staged update the watcher will not install; `reason` is the helper's word for it. */
class Refusal extends Error {}

/**
 * Handles the request in `options.spool` as the root helper's `update` verb does, and answers in
 * <spool>/result. Resolves with the answer; never throws for a bad request or a failed update (those
 * are answers). The staged files are removed from the spool either way.
 */
export async function runUpdateWatch(options: UpdateWatchOptions): Promise<string> {
  const { spool, log } = options;
  let answer: string;
  try {
    answer = await install(options);
  } catch (error) {
    // Anything unforeseen before the swap is a refusal too: the agent must get an answer.
    const reason = error instanceof Refusal ? error.message : 'watcher-error';
    answer = `update refused ${reason}`;
    log.error({ reason, err: error instanceof Refusal ? undefined : error }, 'staged agent update refused');
  }
  const incoming = join(spool, '.result.incoming');
  await writeFile(incoming, `${answer}\n`);
  await rename(incoming, join(spool, 'result'));
  return answer;
}

async function install(options: UpdateWatchOptions): Promise<string> {
  const { spool, installDir, service, log } = options;
  // This host's release files are consumed whatever the answer.
  const staged = { sums: join(spool, RELEASE_SUMS_FILE), signature: join(spool, RELEASE_SIGNATURE_FILE), executable: join(spool, options.releaseFileName) };
  try {
    const request = (await readSmall(join(spool, 'request'), 1024).catch(() => undefined))?.toString('utf8').trim();
    await rm(join(spool, 'request'), { force: true });
    if (request === undefined) throw new Refusal('not-a-regular-file');
    const [verb, name, extra] = request.split(' ');
    if (verb !== 'update' || name === undefined || extra !== undefined) throw new Refusal('update-needs-release-file');
    if (name !== options.releaseFileName) throw new Refusal('wrong-target');
    if (options.releaseKey === undefined) throw new Refusal('no-release-key');
    const version = await verifyStaged(staged, options);
    const agent = join(installDir, options.agentExecutable);
    const previous = join(installDir, options.previousExecutable);
    // Either failure leaves the old executable in place: it runs again and the update is refused.
    await service.stop().catch(async (error: unknown) => {
      log.error({ err: error }, 'the service did not stop for the update');
      await ensureRunning(options);
      throw new Refusal('service-did-not-stop');
    });
    await replaceFile(staged.executable, agent).catch(async (error: unknown) => {
      log.error({ err: error }, 'the new executable could not be put in place');
      await ensureRunning(options);
      throw new Refusal('swap-failed');
    });
    log.info({ version, was: options.installedVersion }, 'installed the agent release; starting the service');
    const why = await startAndWatch(options, version).catch((error: unknown) => {
      log.error({ err: error }, 'watching the new agent failed');
      return 'watcher-error';
    });
    if (why === undefined) {
      log.info({ version, settle_ms: options.settleMs }, 'update ok: the new agent streamed and stayed up');
      return `update ok ${version}`;
    }
    log.error({ version, reason: why, restoring: options.installedVersion }, 'the new agent failed: restoring the previous executable');
    await restorePrevious(options, agent, previous);
    return `update rolled-back ${why}`;
  } finally {
    await Promise.all(Object.values(staged).map((path) => rm(path, { force: true })));
  }
}

/** The version of the staged release, once it is proven: signed by the release key, newer, its executable listed with its hash. */
async function verifyStaged(staged: { sums: string; signature: string; executable: string }, options: UpdateWatchOptions): Promise<string> {
  const sums = await readSmall(staged.sums, MAX_SUMS_BYTES).catch(() => undefined);
  const signature = await readSmall(staged.signature, MAX_SIGNATURE_BYTES).catch(() => undefined);
  const executable = await lstat(staged.executable).catch(() => undefined);
  if (sums === undefined || signature === undefined || !executable?.isFile() || executable.size > MAX_RELEASE_FILE_BYTES) throw new Refusal('staged-file-unreadable-or-link');
  let signed: ReturnType<typeof signedRelease>;
  try {
    signed = signedRelease(sums, signature, options.releaseKey!);
  } catch {
    throw new Refusal('release-signature-invalid-signature-mismatch');
  }
  const { version } = signed;
  if (version === undefined || !isReleaseVersion(version)) throw new Refusal('release-version-unreadable');
  if (compareVersions(version, options.installedVersion) <= 0) throw new Refusal(`not-newer-than-installed-${options.installedVersion}`);
  const expected = signed.digests.get(options.releaseFileName);
  if (expected === undefined) throw new Refusal('not-in-release');
  if ((await sha256File(staged.executable)) !== expected) throw new Refusal('sha256-mismatch');
  return version;
}

/**
 * Puts the previous executable back and runs it. Stop and replace are tried again while they fail:
 * the service manager may be restarting the failed agent (its recovery action), which holds the
 * file. Then started until it runs.
 */
async function restorePrevious(options: UpdateWatchOptions, agent: string, previous: string): Promise<void> {
  for (let attempt = 1; attempt <= RESTORE_ATTEMPTS; attempt += 1) {
    try {
      await options.service.stop();
      await replaceFile(previous, agent);
      break;
    } catch (error) {
      options.log.error({ err: error, attempt }, 'putting the previous executable back failed; trying again');
      await sleep(options.pollMs ?? RETRY_MS);
    }
  }
  await ensureRunning(options);
}

/** Starts the service until it runs, for up to ENSURE_RUNNING_MS (a start is refused while a stop is still pending). */
async function ensureRunning(options: UpdateWatchOptions): Promise<void> {
  const until = Date.now() + ENSURE_RUNNING_MS;
  while ((await options.service.runningPid()) === undefined) {
    if (Date.now() >= until) {
      options.log.error({ waited_ms: ENSURE_RUNNING_MS }, 'the agent service does not run and could not be started');
      return;
    }
    await options.service.start().catch((error: unknown) => options.log.warn({ err: error }, 'starting the agent service failed; trying again'));
    await sleep(options.pollMs ?? RETRY_MS);
  }
}

/** Starts the service and gates it; the helper's reason when it fails, undefined when healthy. */
async function startAndWatch(options: UpdateWatchOptions, version: string): Promise<string | undefined> {
  const { spool, service, log } = options;
  const pollMs = options.pollMs ?? 1_000;
  // A marker left from before says nothing about this start.
  await rm(join(spool, 'streaming'), { force: true });
  try {
    await service.start();
  } catch (error) {
    log.error({ err: error }, 'the service did not start');
    return 'new-binary-did-not-start';
  }
  const streamBy = Date.now() + options.streamWithinMs;
  for (;;) {
    const marker = (await readSmall(join(spool, 'streaming'), 64).catch(() => undefined))?.toString('utf8').split('\n')[0];
    if (marker === version) break;
    if (Date.now() >= streamBy) return 'new-agent-never-streamed';
    await sleep(pollMs);
  }
  const first = await service.runningPid();
  if (first === undefined) return 'new-binary-did-not-stay-up';
  const settledAt = Date.now() + options.settleMs;
  while (Date.now() < settledAt) {
    await sleep(Math.min(pollMs, Math.max(1, settledAt - Date.now())));
    // Looked at twice: one failed `sc queryex` is not a crash.
    if ((await service.runningPid()) !== first) {
      await sleep(pollMs);
      if ((await service.runningPid()) !== first) return 'new-binary-did-not-stay-up';
    }
  }
  return undefined;
}

/** Replaces `target` with a copy of `source`: copied under a temporary name beside it, then renamed over it (MoveFileEx with replace on Windows). */
async function replaceFile(source: string, target: string): Promise<void> {
  const incoming = `${target}.incoming`;
  await copyFile(source, incoming);
  await rename(incoming, target);
}

/** A regular file's bytes, at most `limit`; rejects for a link, a folder or a longer file. */
async function readSmall(path: string, limit: number): Promise<Buffer> {
  const stats = await lstat(path);
  if (!stats.isFile() || stats.size > limit) throw new Error(`${path} is not a regular file of at most ${limit} bytes`);
  const handle = await open(path, 'r');
  try {
    return (await handle.read(Buffer.alloc(limit), 0, limit, 0)).buffer.subarray(0, stats.size);
  } finally {
    await handle.close();
  }
}

/** The gate's lengths from the environment (the helper's variables), in ms. */
export function gateFromEnv(env: NodeJS.ProcessEnv): { streamWithinMs: number; settleMs: number } {
  const secs = (value: string | undefined, fallback: number): number => (value !== undefined && /^[0-9]{1,6}$/.test(value) ? Number(value) : fallback);
  return { streamWithinMs: secs(env.CT_OPS_UPDATE_STREAM_WITHIN_SECS, STREAM_WITHIN_SECS) * 1000, settleMs: secs(env.CT_OPS_UPDATE_SETTLE_SECS, SETTLE_SECS) * 1000 };
}

const run = promisify(execFile);

/**
 * The Service Control Manager through sc.exe (full path: the service's PATH must not pick what runs
 * as LocalSystem). `sc queryex` prints "STATE : 4 RUNNING" and "PID : N"; stop answers 1062 when the
 * service was not started.
 */
export function serviceControlManager(env: NodeJS.ProcessEnv, service = WINDOWS_SERVICE): ServiceControl {
  const sc = win32.join(env.SystemRoot || 'C:\\Windows', 'System32', 'sc.exe');
  const query = async (): Promise<{ state: number | undefined; pid: number | undefined }> => {
    const { stdout } = await run(sc, ['queryex', service], { windowsHide: true }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
    const state = /STATE\s*:\s*(\d+)/.exec(stdout)?.[1];
    const pid = /PID\s*:\s*(\d+)/.exec(stdout)?.[1];
    return { state: state === undefined ? undefined : Number(state), pid: pid === undefined || pid === '0' ? undefined : Number(pid) };
  };
  return {
    async stop() {
      await run(sc, ['stop', service], { windowsHide: true }).catch(() => undefined);
      const until = Date.now() + STOP_WAIT_MS;
      // SERVICE_STOPPED is 1.
      while ((await query()).state !== 1) {
        if (Date.now() >= until) throw new Error(`the ${service} service did not stop within ${STOP_WAIT_MS / 1000} s`);
        await sleep(500);
      }
    },
    async start() {
      await run(sc, ['start', service], { windowsHide: true });
    },
    async runningPid() {
      const { state, pid } = await query();
      // SERVICE_RUNNING is 4.
      return state === 4 ? pid : undefined;
    },
  };
}

/** Where a Windows agent's update happens (installers/install.ps1's layout). */
export interface WindowsUpdatePaths {
  /** %ProgramData%\CT-Ops\requests (SYSTEM and Administrators only, inherited): staged files, request, answer. */
  readonly spool: string;
  /** The folder of the running executable, %ProgramFiles%\CT-Ops. */
  readonly installDir: string;
  readonly agentExecutable: string;
  readonly previousExecutable: string;
  /** The watcher's output: %ProgramData%\CT-Ops\logs\ct-ops-update.log. */
  readonly logFile: string;
}

/** The paths for the agent running as `execPath` (CT_OPS_HELPER_REQUESTS_DIR overrides the spool, as on POSIX). */
export function windowsUpdatePaths(env: NodeJS.ProcessEnv, execPath: string): WindowsUpdatePaths {
  const dataRoot = win32.join(env.ProgramData || 'C:\\ProgramData', 'CT-Ops');
  return {
    spool: env.CT_OPS_HELPER_REQUESTS_DIR || win32.join(dataRoot, 'requests'),
    installDir: win32.dirname(execPath),
    agentExecutable: 'ct-ops-agent.exe',
    previousExecutable: 'ct-ops-agent.previous.exe',
    logFile: win32.join(dataRoot, 'logs', 'ct-ops-update.log'),
  };
}

/**
 * Hands a staged update to the watcher: keeps this agent's executable (`execPath`) as the previous
 * one, then starts that copy as the watcher for `configFile`, outside this process's tree (with
 * `--detach` it starts itself again, detached, and exits at once). Its output goes to the log file.
 * Rejects when the copy or the start fails.
 */
export async function launchUpdateWatch(paths: WindowsUpdatePaths, execPath: string, configFile: string): Promise<void> {
  const previous = join(paths.installDir, paths.previousExecutable);
  await replaceFile(execPath, previous);
  await mkdir(dirname(paths.logFile), { recursive: true });
  const log = await open(paths.logFile, 'a');
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(previous, ['update-watch', '--config', configFile, '--detach'], { detached: true, windowsHide: true, stdio: ['ignore', log.fd, log.fd] });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the update watcher's launcher exited ${String(code)}`))));
    });
  } finally {
    await log.close();
  }
}

/** The second start of `launchUpdateWatch`: this process's own executable, detached, its output inherited. */
export function startDetachedWatcher(configFile: string): void {
  const child = spawn(process.execPath, ['update-watch', '--config', configFile], { detached: true, windowsHide: true, stdio: ['ignore', 'inherit', 'inherit'] });
  child.unref();
}
