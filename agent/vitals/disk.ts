import { statfsSync } from 'node:fs';

export interface FsBlocks {
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
}

/**
 * Used share of a filesystem as `df` computes it: blocks reserved for root count as
 * neither used nor available, so the figure is what an unprivileged writer faces.
 */
export function diskPercentOf({ blocks, bfree, bavail }: FsBlocks): number {
  const used = blocks - bfree;
  const usable = used + bavail;
  return usable <= 0 ? 0 : Math.min(100, Math.max(0, (used / usable) * 100));
}

/** Used share of the filesystem holding `path` (data_dir); 0 when it cannot be read. */
export function diskPercent(path: string): number {
  try {
    return diskPercentOf(statfsSync(path));
  } catch {
    return 0;
  }
}
