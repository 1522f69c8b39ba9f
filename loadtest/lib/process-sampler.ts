import { cpuSeconds, memoryMiB } from './proc.ts';

/** A process's CPU and memory over a run, from /proc. */
export interface ProcessFigures {
  pid: number;
  /** Seconds sampled. */
  seconds: number;
  /** CPU over the whole window, % of one core. */
  cpuPercent: number;
  /** The busiest one-second sample, % of one core. */
  cpuPercentMax1s: number;
  rssMiBStart: number;
  rssMiBMax: number;
  rssMiBEnd: number;
}

/**
 * Samples /proc/<pid>/stat (CPU) and /proc/<pid>/status (VmRSS) every second from start() to
 * stop(); a process that is gone ends the sampling (stop() then reports what was seen, or undefined).
 */
export class ProcessSampler {
  readonly #pid: number;
  #timer: NodeJS.Timeout | undefined;
  #first: { at: number; cpu: number; rss: number } | undefined;
  #last: { at: number; cpu: number; rss: number } | undefined;
  #rssMax = 0;
  #cpuMax1s = 0;

  constructor(pid: number) {
    this.#pid = pid;
  }

  start(): this {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), 1_000);
    return this;
  }

  stop(): ProcessFigures | undefined {
    clearInterval(this.#timer);
    this.#sample();
    const first = this.#first;
    const last = this.#last;
    if (!first || !last) return undefined;
    const seconds = (last.at - first.at) / 1000;
    return {
      pid: this.#pid,
      seconds,
      cpuPercent: seconds > 0 ? (100 * (last.cpu - first.cpu)) / seconds : 0,
      cpuPercentMax1s: this.#cpuMax1s,
      rssMiBStart: first.rss,
      rssMiBMax: this.#rssMax,
      rssMiBEnd: last.rss,
    };
  }

  #sample(): void {
    let sample;
    try {
      sample = { at: Date.now(), cpu: cpuSeconds(this.#pid), rss: memoryMiB(this.#pid, 'VmRSS') };
    } catch {
      clearInterval(this.#timer);
      return;
    }
    const previous = this.#last;
    if (previous && sample.at > previous.at) this.#cpuMax1s = Math.max(this.#cpuMax1s, (100 * (sample.cpu - previous.cpu) * 1000) / (sample.at - previous.at));
    this.#first ??= sample;
    this.#last = sample;
    this.#rssMax = Math.max(this.#rssMax, sample.rss);
  }
}
