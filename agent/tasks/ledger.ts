import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import type { AgentLogger } from '../log/logger.ts';

/**
 * Where a task stands on this host. 'handed-off': the agent started something that outlives it
 * (the uninstaller) and that reports the outcome itself.
 */
export type LedgerPhase = 'acknowledged' | 'running' | 'handed-off' | 'succeeded' | 'failed';

export interface LedgerEntry {
  readonly id: string;
  readonly type: string;
  readonly phase: LedgerPhase;
  readonly receivedAt: number;
  readonly errorCode?: string;
  readonly message?: string;
  readonly resultJson?: string;
  /** The final report reached the appliance (a heartbeat carrying it was acknowledged). */
  readonly delivered: boolean;
}

export const LEDGER_FILE = 'tasks.json';
/** Entries kept: enough to recognise any resend (the appliance resends within days at most). */
export const LEDGER_CAPACITY = 500;
const LEDGER_VERSION = 1;

/**
 * The tasks this agent has received, in data_dir/tasks.json, so a task id is run at most once
 * across reconnects and restarts. Every change is written (atomically) before the agent acts
 * on it: an acknowledgement is never sent for a task the agent could forget.
 */
export class TaskLedger {
  readonly #path: string;
  readonly #entries: Map<string, LedgerEntry>;

  private constructor(path: string, entries: Map<string, LedgerEntry>) {
    this.#path = path;
    this.#entries = entries;
  }

  /** Reads the ledger; an unreadable one is set aside (kept for inspection) and a new one started. */
  static open(dataDir: string, log: AgentLogger): TaskLedger {
    const path = join(dataDir, LEDGER_FILE);
    const entries = new Map<string, LedgerEntry>();
    if (existsSync(path)) {
      try {
        const parsed = JSON.parse(readFileSync(path, 'utf8')) as { version?: unknown; tasks?: unknown };
        if (parsed.version !== LEDGER_VERSION || !Array.isArray(parsed.tasks)) throw new Error(`not a version ${LEDGER_VERSION} task ledger`);
        for (const entry of parsed.tasks as LedgerEntry[]) {
          if (typeof entry?.id === 'string' && typeof entry.phase === 'string') entries.set(entry.id, entry);
        }
      } catch (error) {
        const aside = `${path}.unreadable-${Date.now()}`;
        let movedTo: string | null = aside;
        try {
          renameSync(path, aside);
        } catch {
          // A read-only data_dir: the next write fails too, and the runner reports that per task.
          movedTo = null;
        }
        log.error({ path, moved_to: movedTo, error: (error as Error).message }, 'task ledger unreadable; starting a new one');
      }
    }
    return new TaskLedger(path, entries);
  }

  get(id: string): LedgerEntry | undefined {
    return this.#entries.get(id);
  }

  entries(): LedgerEntry[] {
    return [...this.#entries.values()];
  }

  /**
   * Records a new entry or replaces one, and writes the ledger before returning. Throws
   * ERR_DATA_DIR_UNUSABLE when the file cannot be written; the entry is still kept in memory, so
   * this run keeps recognising the task.
   */
  put(entry: LedgerEntry): void {
    this.#entries.delete(entry.id);
    this.#entries.set(entry.id, entry);
    this.#evict();
    this.#save();
  }

  #evict(): void {
    // Oldest first (a Map keeps insertion order); only entries whose outcome reached the appliance go.
    for (const entry of this.#entries.values()) {
      if (this.#entries.size <= LEDGER_CAPACITY) return;
      if (entry.delivered) this.#entries.delete(entry.id);
    }
  }

  #save(): void {
    writeFileAtomic(this.#path, `${JSON.stringify({ version: LEDGER_VERSION, tasks: [...this.#entries.values()] })}\n`, 0o600);
  }
}
