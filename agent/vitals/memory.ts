import { readFileSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';

/**
 * Used memory as a share of total. On Linux, MemAvailable counts reclaimable cache as
 * free (os.freemem does not), which is what `free` and monitoring tools report.
 */
export function memoryPercent(platform: NodeJS.Platform = process.platform): number {
  const total = totalmem();
  if (total <= 0) return 0;
  const available = (platform === 'linux' ? memAvailableBytes() : undefined) ?? freemem();
  return Math.min(100, Math.max(0, ((total - available) / total) * 100));
}

/** MemAvailable from /proc/meminfo in bytes, or undefined when the kernel does not report it. */
export function memAvailableBytes(meminfo?: string): number | undefined {
  let text = meminfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/meminfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const kib = /^MemAvailable:\s+(\d+)\s*kB/m.exec(text)?.[1];
  return kib === undefined ? undefined : Number(kib) * 1024;
}
