import type { Logger } from 'pino';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import { PeriodicPasses } from '../lib/periodic-passes.ts';
import type { HeartbeatUpdate } from '../model/host.ts';
import type { Stores, TableStores } from '../store/index.ts';

const FLUSH_INTERVAL_MS = 1000;
const FLUSH_AT_HOSTS = 1000;
const PRUNE_INTERVAL_MS = 3_600_000;
/** How long (ms) close waits for a prune or flush in flight (a prune of a large backlog runs in many slices) before its own flush. */
const CLOSE_WAIT_MS = 10_000;
/**
 * A sample is stored when at least this share of the heartbeat interval passed since the host's
 * last stored one: an agent on its timer always qualifies (network jitter is far below 10%), and
 * the extra beats it sends on task reports, or a flood, are acknowledged but not stored.
 */
const MIN_SAMPLE_SPACING = 0.9;
/** The longest heartbeat interval an agent may announce (HeartbeatRequest.interval_secs). */
const LONGEST_INTERVAL_MS = 3_600_000;

export type HeartbeatRecord = HeartbeatUpdate & { agentTimestamp: number };

/** What one flush writes for a host: its latest heartbeat (last seen, version), and a vitals sample when one was due. */
interface PendingHost {
  latest: HeartbeatRecord;
  sample: HeartbeatRecord | undefined;
}

/**
 * Buffers heartbeats and writes them in one transaction per second (or per 1,000 hosts): one
 * fsync for many agents instead of one each. The queue holds one entry per host (its latest
 * heartbeat updates the host's row); a vitals sample is stored at most once per host per heartbeat
 * interval, so the history (and the queue) grow with the fleet, never with what one host sends.
 * Also prunes vitals history older than the retention period.
 */
export class VitalsWriter {
  readonly #stores: Stores;
  readonly #log: Logger;
  readonly #retentionMs: number;
  #pending = new Map<string, PendingHost>();
  /** When each host's last stored sample was received (Unix ms). */
  readonly #lastSampleAt = new Map<string, number>();
  readonly #passes: PeriodicPasses;

  constructor(stores: Stores, log: Logger, retentionMs: number) {
    this.#stores = stores;
    this.#log = log;
    this.#retentionMs = retentionMs;
    this.#passes = new PeriodicPasses(log);
    this.#passes.every(FLUSH_INTERVAL_MS, 'vitals flush failed', () => this.flush());
    this.#passes.every(PRUNE_INTERVAL_MS, 'vitals prune failed', () => this.prune(Date.now()), { runNow: true });
  }

  /**
   * Queues the heartbeat: the host's row always takes its latest one; its vitals become a stored
   * sample unless one of the host's was taken less than an interval ago. True when a sample was taken.
   */
  add(record: HeartbeatRecord): boolean {
    const last = this.#lastSampleAt.get(record.hostId);
    const sampleDue = last === undefined || record.receivedAt - last >= record.intervalSecs * 1000 * MIN_SAMPLE_SPACING;
    if (sampleDue) this.#lastSampleAt.set(record.hostId, record.receivedAt);
    const pending = this.#pending.get(record.hostId);
    if (pending) {
      pending.latest = record;
      if (sampleDue) pending.sample = record;
    } else {
      this.#pending.set(record.hostId, { latest: record, sample: sampleDue ? record : undefined });
      if (this.#pending.size >= FLUSH_AT_HOSTS) void this.flush();
    }
    return sampleDue;
  }

  /** Writes the queued heartbeats; never rejects (a failure is logged, the samples dropped). */
  async flush(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending.values()];
    this.#pending = new Map();
    try {
      await this.#stores.transact((tx) => write(tx, batch));
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
      for (const host of batch) {
        try {
          await this.#stores.transact((tx) => write(tx, [host]));
        } catch (sampleError) {
          this.#log.warn({ err: sampleError, host_id: host.latest.hostId }, 'vitals sample dropped');
        }
      }
    }
  }

  /** Deletes samples older than the retention period; a storage failure is logged, and the next prune catches up. */
  async prune(now: number): Promise<void> {
    // A host silent for longer than any interval needs no memory of its last sample.
    for (const [hostId, at] of this.#lastSampleAt) if (now - at > LONGEST_INTERVAL_MS) this.#lastSampleAt.delete(hostId);
    try {
      const removed = await this.#stores.vitals.prune(now - this.#retentionMs);
      if (removed > 0) this.#log.info({ removed }, 'vitals history pruned');
    } catch (error) {
      this.#log.error(failureFields(error), 'vitals prune failed');
    }
  }

  /** Stops the timers, waits for a prune or flush in flight, and writes what is queued; resolves once it is written (or dropped with a log line). */
  async close(): Promise<void> {
    // A prune or flush in flight ends first: the final flush must not interleave with it, nor anything follow the close.
    await this.#passes.stop(CLOSE_WAIT_MS);
    await this.flush();
  }
}

/** The queued heartbeats of `hosts`, in the flush's transaction `tx`: their samples, then their rows. */
async function write(tx: TableStores, hosts: readonly PendingHost[]): Promise<void> {
  await tx.vitals.insertMany(hosts.flatMap(({ sample }) => (sample ? [sample] : [])));
  await tx.hosts.recordHeartbeats(hosts.map(({ latest }) => latest));
}
