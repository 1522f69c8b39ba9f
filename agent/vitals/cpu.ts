import { cpus, type CpuInfo } from 'node:os';

interface CpuTimes {
  readonly busy: number;
  readonly total: number;
}

function totals(infos: readonly CpuInfo[]): CpuTimes {
  let busy = 0;
  let total = 0;
  for (const { times } of infos) {
    const all = times.user + times.nice + times.sys + times.idle + times.irq;
    total += all;
    busy += all - times.idle;
  }
  return { busy, total };
}

/** CPU busy share (0–100) between two counter readings; 0 when no time has passed. */
export function cpuPercentBetween(previous: CpuTimes, current: CpuTimes): number {
  const total = current.total - previous.total;
  if (total <= 0) return 0;
  return Math.min(100, Math.max(0, ((current.busy - previous.busy) / total) * 100));
}

/**
 * Each call returns the CPU use since the previous call (the first since creation):
 * os.cpus() gives cumulative counters, so only their differences mean anything.
 */
export function createCpuSampler(read: () => readonly CpuInfo[] = cpus): () => number {
  let previous = totals(read());
  return () => {
    const current = totals(read());
    const percent = cpuPercentBetween(previous, current);
    previous = current;
    return percent;
  };
}
