import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError, errorCodeOf, isErrorCode } from '../../common/errors.ts';
import type { PublicKey } from '../../common/minisign.ts';
import type { UpdateOffer__Output, UpdateStatus } from '../../common/proto.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import { MAX_SIGNATURE_BYTES, MAX_SUMS_BYTES, RELEASE_SIGNATURE_FILE, RELEASE_SUMS_FILE } from '../../common/release-version.ts';
import type { AgentLogger } from '../log/logger.ts';
import { downloadResuming, type DownloadSource } from './download.ts';
import { checkDownloaded, checkOffer, type RunningAgent } from './verify.ts';

/**
 * Where one host's self-update stands (issue 12), kept in DATA_DIR/update/state.json so a restart,
 * and the swap itself, lose nothing: the version, its phase (proto UpdatePhase, lower-case), the
 * refusal's code and reason, and whether the appliance acknowledged a heartbeat carrying it.
 */
export interface UpdateRecord {
  readonly version: string;
  readonly phase: 'downloading' | 'staged' | 'installed' | 'healthy' | 'rolled_back' | 'failed';
  readonly errorCode: string;
  readonly message: string;
  readonly acknowledged: boolean;
  /** Download attempts so far (each resumes the last). */
  readonly attempts: number;
}

/** The phases that end an attempt: an offer of the same version is not taken again. */
const FINAL_PHASES: ReadonlySet<UpdateRecord['phase']> = new Set(['healthy', 'rolled_back', 'failed']);

/** Download attempts of one version before it is given up (ERR_UPDATE_DOWNLOAD_FAILED). */
export const MAX_DOWNLOAD_ATTEMPTS = 8;
/** The wait before the next attempt after a failure (ms): this times the attempts so far. A busy appliance's Retry-After is followed instead. */
const RETRY_STEP_MS = 30_000;
/** How often the agent looks for the root helper's answer while an update is staged or installed (ms). */
const RESULT_POLL_MS = 2_000;
/**
 * How long this (the old) agent waits for the helper's answer to a staged update before giving the
 * version up (ms): the helper's whole watch is 7 minutes by default; no answer at all means no helper
 * took the request (its path unit missing or stopped).
 */
export const HELPER_ANSWER_TIMEOUT_MS = 15 * 60_000;


export interface UpdaterDeps {
  readonly dataDir: string;
  readonly running: RunningAgent;
  readonly releaseKey: PublicKey | undefined;
  /**
   * The root helper's spool (installers/ct-ops-agent-helper.sh), when this host has one this agent
   * may write to; undefined: updates cannot be installed here (ERR_UPDATE_UNAVAILABLE).
   */
  readonly spoolDir: string | undefined;
  /**
   * Starts what installs the staged request, where no service manager does on its own (Windows: the
   * update watcher, update-watch.ts); undefined where the request itself starts the root helper.
   */
  readonly startInstaller?: () => Promise<void>;
  /** Where the files of an offer are fetched: the host and trust of the current ingest address, the current JWT. */
  readonly source: (offer: UpdateOffer__Output, file: string) => DownloadSource;
  /** Told when the status to report changed (the next heartbeat should carry it now). */
  readonly changed: () => void;
  readonly log: AgentLogger;
  readonly now?: () => number;
}

/**
 * The agent's side of self-update: takes an offer from a heartbeat ack, checks it, downloads the
 * release (resuming), verifies it against the pinned release key, stages it for the root helper —
 * which verifies again itself, swaps, restarts and watches (installers/ct-ops-agent-helper.sh) — and
 * reports each phase on the heartbeat until acknowledged. A refused or failed version is not taken
 * again (no retry loop); a newer offer is. After the swap the new agent finds the record staged at
 * its own version (installed) and the old one, restored, finds the helper's rollback answer.
 */
export class AgentUpdater {
  readonly #deps: UpdaterDeps;
  readonly #dir: string;
  #record: UpdateRecord | undefined;
  #busy = false;
  #timer: NodeJS.Timeout | undefined;
  /** When this process began waiting for the helper's answer (ms). */
  #waitingSince = 0;
  readonly #abort = new AbortController();

  constructor(deps: UpdaterDeps) {
    this.#deps = deps;
    this.#dir = join(deps.dataDir, 'update');
    this.#record = readRecord(join(this.#dir, 'state.json'), deps.log);
    const record = this.#record;
    if (record && (record.phase === 'staged' || record.phase === 'installed')) {
      // Not reported from here (report false): the agent is not built yet, and its stream's first heartbeat carries the record anyway.
      if (record.version === deps.running.version && record.phase === 'staged') this.#set({ ...record, phase: 'installed', errorCode: '', message: '', acknowledged: false }, false);
      // Staged, but the installer this agent starts never took the request (a restart came between): started again.
      if (record.phase === 'staged' && record.version !== deps.running.version && deps.startInstaller && deps.spoolDir && existsSync(join(deps.spoolDir, 'request'))) {
        void this.#startInstaller(record.version);
      }
      this.#watchHelper();
    }
    // A download cut by a restart stays 'downloading': the appliance's next offer of that version resumes it.
  }

  /** What the next heartbeat reports: the record, while not acknowledged (`pending`), or always (a stream's first heartbeat). */
  status(): { status: UpdateStatus; pending: boolean } | undefined {
    const record = this.#record;
    if (record === undefined) return undefined;
    return { status: { version: record.version, phase: `UPDATE_PHASE_${record.phase.toUpperCase()}` as UpdateStatus['phase'], error_code: record.errorCode, message: record.message }, pending: !record.acknowledged };
  }

  /** A heartbeat carrying `status` was acknowledged: it stays acknowledged unless the record moved since. */
  delivered(status: UpdateStatus): void {
    const record = this.#record;
    if (record && !record.acknowledged && status.version === record.version && status.phase === `UPDATE_PHASE_${record.phase.toUpperCase()}`) {
      this.#set({ ...record, acknowledged: true }, false);
    }
  }

  /** This agent's first heartbeat of a stream was acknowledged: the new version streams (the helper's health gate). */
  async streaming(): Promise<void> {
    const record = this.#record;
    if (record?.phase !== 'installed' || record.version !== this.#deps.running.version || this.#deps.spoolDir === undefined) return;
    await writeFile(join(this.#deps.spoolDir, 'streaming'), `${record.version}\n`, { mode: 0o644 }).catch((error: unknown) =>
      this.#deps.log.warn({ err: error }, 'could not tell the root helper the new agent streams'),
    );
  }

  /**
   * An ack carried `offer`: taken unless this version was handled already or another update is under
   * way; a download of this version cut by a restart is resumed.
   */
  offered(offer: UpdateOffer__Output): void {
    const record = this.#record;
    const resuming = record?.phase === 'downloading' && record.version === offer.version;
    if (this.#busy || (!resuming && ((record && !FINAL_PHASES.has(record.phase)) || record?.version === offer.version))) return;
    this.#busy = true;
    void this.#take(offer).finally(() => (this.#busy = false));
  }

  #now(): number {
    return (this.#deps.now ?? Date.now)();
  }

  /** Stops waiting and downloading (the agent is stopping). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#abort.abort();
  }

  async #take(offer: UpdateOffer__Output): Promise<void> {
    const { log } = this.#deps;
    try {
      checkOffer(offer, this.#deps.running, this.#deps.releaseKey);
      if (this.#deps.spoolDir === undefined) throw new CtOpsError('ERR_UPDATE_UNAVAILABLE', 'this host has no root helper spool this agent may write to: updates cannot be installed here');
      this.#set({ version: offer.version, phase: 'downloading', errorCode: '', message: '', acknowledged: false, attempts: 0 });
      log.info({ version: offer.version, size: offer.size }, 'agent update offered: downloading');
      await this.#download(offer);
    } catch (error) {
      this.#failed(offer.version, error);
    }
  }

  /** One attempt; schedules the next on a retryable failure, up to MAX_DOWNLOAD_ATTEMPTS. */
  async #download(offer: UpdateOffer__Output): Promise<void> {
    const record = this.#record!;
    const folder = join(this.#dir, offer.version);
    await mkdir(folder, { recursive: true, mode: 0o700 });
    const executable = join(folder, offer.file_name);
    try {
      await downloadResuming(this.#deps.source(offer, RELEASE_SUMS_FILE), join(folder, RELEASE_SUMS_FILE), MAX_SUMS_BYTES, this.#abort.signal);
      await downloadResuming(this.#deps.source(offer, RELEASE_SIGNATURE_FILE), join(folder, RELEASE_SIGNATURE_FILE), MAX_SIGNATURE_BYTES, this.#abort.signal);
      await downloadResuming(this.#deps.source(offer, offer.file_name), executable, offer.size, this.#abort.signal);
    } catch (error) {
      const code = errorCodeOf(error);
      // Turned away for being one too many is no failure: back when the appliance says, give or take
      // half (a wave of agents spreads out), and not counted against the attempts.
      const busy = code === 'ERR_DOWNLOAD_BUSY';
      const attempts = busy ? record.attempts : record.attempts + 1;
      if ((!busy && code !== 'ERR_UPDATE_DOWNLOAD_FAILED') || attempts >= MAX_DOWNLOAD_ATTEMPTS || this.#abort.signal.aborted) throw error;
      const retryAfterMs = (error as { retryAfterMs?: number }).retryAfterMs ?? RETRY_STEP_MS;
      const waitMs = busy ? Math.round(retryAfterMs * (0.5 + Math.random())) : RETRY_STEP_MS * attempts;
      this.#set({ ...record, attempts }, false);
      this.#deps.log.warn({ version: offer.version, attempt: attempts, retry_in_ms: waitMs, error_code: code }, 'agent update download interrupted; resuming later');
      this.#busy = true;
      this.#timer = setTimeout(() => void this.#download(offer).catch((failure: unknown) => this.#failed(offer.version, failure)).finally(() => (this.#busy = false)), waitMs);
      // A timer of its own must not keep an agent that stopped alive.
      this.#timer.unref();
      return;
    }
    // Read once, and only these bytes are checked and staged.
    const sums = await readFile(join(folder, RELEASE_SUMS_FILE));
    const signature = await readFile(join(folder, RELEASE_SIGNATURE_FILE));
    await checkDownloaded({ executable, sums, signature }, offer, this.#deps.releaseKey!);
    await this.#stage(folder, offer.file_name);
    // Recorded before an installer starts: it may stop this agent at once, and the new one must find the record staged.
    this.#set({ ...this.#record!, phase: 'staged', errorCode: '', message: '', acknowledged: false });
    this.#deps.log.info({ version: offer.version }, 'agent update verified and staged for the root helper');
    if (this.#deps.startInstaller) await this.#startInstaller(offer.version);
    if (this.#record?.phase === 'staged') this.#watchHelper();
  }

  /** Starts the installer of the staged request; when it cannot be started, withdraws the request and gives the version up. */
  async #startInstaller(version: string): Promise<void> {
    try {
      await this.#deps.startInstaller!();
    } catch (error) {
      await rm(join(this.#deps.spoolDir!, 'request'), { force: true });
      this.#failed(version, new CtOpsError('ERR_UPDATE_UNAVAILABLE', `the staged update's installer could not be started: ${(error as Error).message}`, { version }, { cause: error }));
    }
  }

  /**
   * Hands the verified files to the root helper: copies into its spool (each file written under a
   * temporary name, then renamed), then the request line last, which starts the helper.
   */
  async #stage(folder: string, fileName: string): Promise<void> {
    const spool = this.#deps.spoolDir!;
    await rm(join(spool, 'result'), { force: true });
    await rm(join(spool, 'streaming'), { force: true });
    for (const name of [RELEASE_SUMS_FILE, RELEASE_SIGNATURE_FILE, fileName]) {
      const staging = join(spool, `.${name}.incoming`);
      await copyFile(join(folder, name), staging);
      await rename(staging, join(spool, name));
    }
    const request = join(spool, '.request.incoming');
    await writeFile(request, `update ${fileName}\n`, { mode: 0o644 });
    await rename(request, join(spool, 'request'));
  }

  /** Polls the helper's answer while the update is staged or installed; records what it says. */
  #watchHelper(): void {
    clearTimeout(this.#timer);
    this.#waitingSince ||= this.#now();
    this.#timer = setTimeout(() => {
      void this.#readHelperAnswer().finally(() => {
        const phase = this.#record?.phase;
        if (!this.#abort.signal.aborted && (phase === 'staged' || phase === 'installed')) this.#watchHelper();
      });
    }, RESULT_POLL_MS);
    this.#timer.unref();
  }

  async #readHelperAnswer(): Promise<void> {
    const record = this.#record;
    const spool = this.#deps.spoolDir;
    if (record === undefined || spool === undefined) return;
    const answer = (await readFile(join(spool, 'result'), 'utf8').catch(() => '')).trim();
    if (!answer.startsWith('update ')) {
      // The old agent, still running: nothing was swapped, and no helper is going to answer.
      if (record.phase === 'staged' && record.version !== this.#deps.running.version && this.#now() - this.#waitingSince > HELPER_ANSWER_TIMEOUT_MS) {
        this.#set({ ...record, phase: 'failed', errorCode: 'ERR_UPDATE_UNAVAILABLE', message: `the root helper did not answer the staged update within ${HELPER_ANSWER_TIMEOUT_MS / 60_000} minutes`, acknowledged: false });
        this.#deps.log.error({ version: record.version }, 'the root helper did not answer the staged update; this version is not tried again');
      }
      return;
    }
    const [, outcome = '', ...rest] = answer.split(' ');
    const reason = rest.join(' ').slice(0, 512);
    if (outcome === 'ok' && rest[0] === record.version) {
      this.#set({ ...record, phase: 'healthy', errorCode: '', message: '', acknowledged: false });
      this.#deps.log.info({ version: record.version }, 'agent update healthy');
    } else if (outcome === 'rolled-back') {
      this.#set({ ...record, phase: 'rolled_back', errorCode: 'ERR_UPDATE_ROLLED_BACK', message: reason, acknowledged: false });
      this.#deps.log.error({ version: record.version, reason }, 'agent update rolled back by the root helper');
    } else if (outcome === 'refused') {
      this.#set({ ...record, phase: 'failed', errorCode: 'ERR_UPDATE_HELPER_REFUSED', message: reason, acknowledged: false });
      this.#deps.log.error({ version: record.version, reason }, 'the root helper refused the agent update');
    } else {
      return;
    }
    await rm(join(spool, 'result'), { force: true });
  }

  #failed(version: string, error: unknown): void {
    const code = errorCodeOf(error);
    const errorCode = code !== undefined && isErrorCode(code) ? code : 'ERR_INTERNAL';
    const message = (error as Error).message.slice(0, 512);
    this.#set({ version, phase: 'failed', errorCode, message, acknowledged: false, attempts: this.#record?.attempts ?? 0 });
    this.#deps.log.error({ version, error_code: errorCode, error: message }, 'agent update refused or failed; this version is not tried again');
  }

  /** Records `record` (DATA_DIR/update/state.json, atomically) and, when `report`, has it reported at once. */
  #set(record: UpdateRecord, report = true): void {
    this.#record = record;
    try {
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
      writeFileAtomic(join(this.#dir, 'state.json'), `${JSON.stringify(record)}\n`, 0o600);
    } catch (error) {
      this.#deps.log.error({ err: error }, 'cannot record the agent update state');
    }
    // Told after the current turn, never from inside a caller that may still be building what `changed` reaches (agent/cli/run.ts).
    if (report) queueMicrotask(() => this.#deps.changed());
  }
}

function readRecord(path: string, log: AgentLogger): UpdateRecord | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as UpdateRecord;
  } catch (error) {
    log.warn({ err: error, path }, 'the agent update state is unreadable; starting without it');
    return undefined;
  }
}
