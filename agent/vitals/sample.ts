import { uptime } from 'node:os';
import { createCpuSampler } from './cpu.ts';
import { diskPercent } from './disk.ts';
import { memoryPercent } from './memory.ts';

export interface Vitals {
  readonly cpuPercent: number;
  readonly memoryPercent: number;
  readonly diskPercent: number;
  readonly uptimeSeconds: number;
}

export type VitalsSampler = () => Vitals;

/** Samples this host's vitals; disk use is that of the filesystem holding data_dir. */
export function createVitalsSampler(dataDir: string): VitalsSampler {
  const cpu = createCpuSampler();
  return () => ({
    cpuPercent: cpu(),
    memoryPercent: memoryPercent(),
    diskPercent: diskPercent(dataDir),
    uptimeSeconds: Math.floor(uptime()),
  });
}
