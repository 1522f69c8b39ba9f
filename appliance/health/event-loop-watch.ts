import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Logger } from 'pino';

/** How often the loop's timer samples (ms): the smallest delay it can see. Node's default. */
export const LOOP_SAMPLE_MS = 10;
/** One window's length (ms): short enough that a periodic pass's stall stands out in its window. */
export const LOOP_WINDOW_MS = 10_000;
/** Windows kept: one hour. */
const WINDOWS_KEPT = 360;
/** A window whose longest delay passes this is logged (a heartbeat ack waits at least that long). */
const STALL_LOG_MS = 250;

/** The event loop's delay over one window: ms beyond the sampling interval, as the appliance's timers saw it. */
export interface LoopWindow {
  /** Start of the window, ms since the epoch. */
  startedAtMs: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

const beyondSample = (ns: number): number => Math.max(0, Math.round((ns / 1e6 - LOOP_SAMPLE_MS) * 10) / 10);

/**
 * Watches the appliance's event loop in windows of LOOP_WINDOW_MS (node:perf_hooks
 * monitorEventLoopDelay, a libuv timer every LOOP_SAMPLE_MS) and keeps the last hour, for the
 * runtime route and the load generator (issue 14: "the appliance's event-loop delay over the run").
 * A window whose longest delay passes STALL_LOG_MS is logged (`event_loop_stall`), so a periodic
 * pass that blocks the loop shows next to its own log lines.
 */
export class EventLoopWatch {
  readonly #log: Logger;
  readonly #histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  readonly #windows: LoopWindow[] = [];
  #windowStartedAtMs = Date.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(log: Logger) {
    this.#log = log;
  }

  start(): this {
    this.#histogram.enable();
    this.#windowStartedAtMs = Date.now();
    this.#timer = setInterval(() => this.#closeWindow(), LOOP_WINDOW_MS).unref();
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#histogram.disable();
  }

  /** The closed windows that end after `sinceMs` (ms since the epoch), oldest first, then the window still open. */
  windows(sinceMs = 0): LoopWindow[] {
    const open = this.#current(Date.now());
    return [...this.#windows, ...(open ? [open] : [])].filter((window) => window.startedAtMs + window.seconds * 1000 > sinceMs);
  }

  #current(nowMs: number): LoopWindow | undefined {
    const histogram = this.#histogram;
    if (histogram.count === 0) return undefined;
    return {
      startedAtMs: this.#windowStartedAtMs,
      seconds: Math.round(nowMs - this.#windowStartedAtMs) / 1000,
      p50Ms: beyondSample(histogram.percentile(50)),
      p99Ms: beyondSample(histogram.percentile(99)),
      maxMs: beyondSample(histogram.max),
    };
  }

  #closeWindow(): void {
    const nowMs = Date.now();
    const window = this.#current(nowMs);
    this.#histogram.reset();
    this.#windowStartedAtMs = nowMs;
    if (window === undefined) return;
    this.#windows.push(window);
    if (this.#windows.length > WINDOWS_KEPT) this.#windows.shift();
    if (window.maxMs > STALL_LOG_MS) this.#log.warn({ event: 'event_loop_stall', max_ms: window.maxMs, p99_ms: window.p99Ms, window_secs: window.seconds }, 'the event loop was blocked: heartbeat acks waited');
  }
}

const mib = (bytes: number): number => Math.round(bytes / 104_857.6) / 10;

/**
 * What `GET /api/v1/appliance/runtime` answers (snake_case JSON): this process's memory (MiB),
 * `onlineHosts`, and the loop's windows that end after `sinceMs` (ms since the epoch; 0: the last hour).
 * The load generator's floor server answers the same, so a run compares like with like.
 */
export function runtimeReport(onlineHosts: number, watch: EventLoopWatch, sinceMs: number): Record<string, unknown> {
  const memory = process.memoryUsage();
  return {
    pid: process.pid,
    uptime_secs: Math.round(process.uptime()),
    rss_mib: mib(memory.rss),
    heap_used_mib: mib(memory.heapUsed),
    online_hosts: onlineHosts,
    event_loop: {
      sample_ms: LOOP_SAMPLE_MS,
      window_secs: LOOP_WINDOW_MS / 1000,
      windows: watch.windows(sinceMs).map((window) => ({
        started_at: new Date(window.startedAtMs).toISOString(),
        seconds: window.seconds,
        p50_ms: window.p50Ms,
        p99_ms: window.p99Ms,
        max_ms: window.maxMs,
      })),
    },
  };
}
