import type { Logger } from 'pino';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import type { Stores } from '../store/index.ts';
import type { HeartbeatUpdate } from '../store/hosts.ts';

const FLUSH_INTERVAL_MS = 1000;
const FLUSH_AT_SAMPLES = 1000;
const PRUNE_INTERVAL_MS = 3_600_000;
/**
 * A sample is stored when at least this share of the heartbeat interval passed since the host's
 * last stored one: an agent on its timer always qualifies (network jitter is far below 10%), and
 * the extra beats it sends on task reports, or a flood, are acknowledged but not stored.
 */
const MIN_SAMPLE_SPACING = 0.9;
/** The longest heartbeat interval an agent may announce (HeartbeatRequest.interval_secs). */
const LONGEST_INTERVAL_MS = 3_600_000;

export type HeartbeatRecord = HeartbeatUpdate & { agentTimestamp: number };

/**
 * Buffers heartbeats and writes them in one transaction per second (or per 1,000
 * samples): one fsync for many agents instead of one each. Stores at most one sample per host
 * per heartbeat interval, so the history (and the queue) grow with the fleet, never with what one
 * host sends. Also prunes vitals history older than the retention period.
 */
export class VitalsWriter {
  readonly #stores: Stores;
  readonly #log: Logger;
  readonly #retentionMs: number;
  #pending: HeartbeatRecord[] = [];
  /** When each host's last stored sample was received (Unix ms). */
  readonly #lastSampleAt = new Map<string, number>();
  readonly #flushTimer: NodeJS.Timeout;
  readonly #pruneTimer: NodeJS.Timeout;

  constructor(stores: Stores, log: Logger, retentionMs: number) {
    this.#stores = stores;
    this.#log = log;
    this.#retentionMs = retentionMs;
    this.#flushTimer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    this.#pruneTimer = setInterval(() => this.prune(Date.now()), PRUNE_INTERVAL_MS);
    this.prune(Date.now());
  }

  /** Queues the heartbeat for storage unless one of the host's was stored less than an interval ago; true when queued. */
  add(record: HeartbeatRecord): boolean {
    const last = this.#lastSampleAt.get(record.hostId);
    if (last !== undefined && record.receivedAt - last < record.intervalSecs * 1000 * MIN_SAMPLE_SPACING) return false;
    this.#lastSampleAt.set(record.hostId, record.receivedAt);
    this.#pending.push(record);
    if (this.#pending.length >= FLUSH_AT_SAMPLES) this.flush();
    return true;
  }

  flush(): void {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    try {
      this.#stores.transaction(() => {
        for (const record of batch) {
          this.#write(record);
        }
      });
    } catch (error) {
      // The storage refuses writes (full, I/O error): every sample would fail the same way. The
      // samples were acknowledged as received, not as stored; drop them with one line, not one each.
      if (isStorageFailure(error)) {
        this.#log.warn({ ...failureFields(error), samples: batch.length }, 'vitals samples dropped: storage failing');
        return;
      }
      // A host deleted between heartbeat and flush fails the whole batch on its foreign key:
      // keep the rest by writing them one by one.
      this.#log.warn({ err: error, samples: batch.length }, 'vitals batch failed; writing samples one by one');
      for (const record of batch) {
        try {
          this.#stores.transaction(() => this.#write(record));
        } catch (sampleError) {
          this.#log.warn({ err: sampleError, host_id: record.hostId }, 'vitals sample dropped');
        }
      }
    }
  }

  /** Deletes samples older than the retention period; a storage failure is logged, and the next prune catches up. */
  prune(now: number): void {
    // A host silent for longer than any interval needs no memory of its last sample.
    for (const [hostId, at] of this.#lastSampleAt) if (now - at > LONGEST_INTERVAL_MS) this.#lastSampleAt.delete(hostId);
    try {
      const removed = this.#stores.vitals.prune(now - this.#retentionMs);
      if (removed > 0) this.#log.info({ removed }, 'vitals history pruned');
    } catch (error) {
      this.#log.error(failureFields(error), 'vitals prune failed');
    }
  }

  #write(record: HeartbeatRecord): void {
    const { hostId, receivedAt, agentTimestamp, cpuPercent, memoryPercent, diskPercent, uptimeSeconds } = record;
    this.#stores.vitals.insert({ hostId, receivedAt, agentTimestamp, cpuPercent, memoryPercent, diskPercent, uptimeSeconds });
    this.#stores.hosts.recordHeartbeat(record);
  }

  close(): void {
    clearInterval(this.#flushTimer);
    clearInterval(this.#pruneTimer);
    this.flush();
  }
}
