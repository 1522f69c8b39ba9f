import { CtOpsError } from '../../common/errors.ts';
import { ACCEPTED_SCAN_ID, idPattern } from '../../common/ids.ts';
import { RECORD_REASONS, SkipTally, storablePackage, type RecordReason, type SkippedPackages } from '../../common/inventory-records.ts';
import { invalidUtf8Elements, type SoftwareInventoryChunk__Output } from '../../common/proto.ts';
import type { PackageInput } from '../model/inventory.ts';

/** The contract: at most 500 packages per chunk. */
export const MAX_PACKAGES_PER_CHUNK = 500;
/** Bounds a scan's chunks, small or empty ones included; its packages are bounded by HOST_INVENTORY_LIMITS (store). */
export const MAX_CHUNKS_PER_SCAN = 400;

const TASK_ID = idPattern('tsk');

/** A chunk that passed validation: nothing is written for a chunk that did not. */
export interface ValidChunk {
  scanId: string;
  taskId: string;
  chunkIndex: number;
  isLast: boolean;
  packages: PackageInput[];
  /**
   * The chunk's packages that cannot be stored or were stored changed (common/inventory-records.ts),
   * by reason, and the agent's own counts (SoftwareInventoryChunk.skipped) with on_host set.
   */
  skipped: SkippedPackages[];
}

/** Reasons (RECORD_REASONS) there are at most: more entries than that is not a count by reason. */
const MAX_HOST_COUNTS = RECORD_REASONS.size;

/** The agent's counts of records it did not send as they were; refuses more entries than there are reasons (a flood, not a count). */
function hostCounts(message: SoftwareInventoryChunk__Output): SoftwareInventoryChunk__Output['skipped'] {
  const entries = Array.isArray(message.skipped) ? message.skipped : [];
  if (entries.length > MAX_HOST_COUNTS) {
    throw invalid(`SoftwareInventoryChunk.skipped holds at most ${MAX_HOST_COUNTS} counts, one per reason`, { field: 'skipped', count: entries.length });
  }
  return entries;
}

function invalid(message: string, details: Record<string, string | number>): CtOpsError {
  return new CtOpsError('ERR_INVALID_ARGUMENT', message, details);
}

/**
 * Validates a whole chunk before anything is written: the agent named in it, the scan and task
 * ids, the chunk index and the package count refuse the chunk; a package that cannot be stored
 * (an empty name, an identity field over its cap, unsafe characters, text that was not UTF-8 on the
 * wire) is left out and counted in `skipped`, so one odd record never costs the scan. A package
 * with an implausible install date or an overlong publisher is stored with the date unknown or the
 * publisher cut, and counted too (install_date_dropped, publisher_truncated: common/inventory-records.ts).
 */
export function parseChunk(message: SoftwareInventoryChunk__Output, agentId: string): ValidChunk {
  if (message.agent_id !== agentId) {
    throw new CtOpsError('ERR_AGENT_MISMATCH', 'SoftwareInventoryChunk.agent_id is not the agent of this JWT', { agent_id: String(message.agent_id).slice(0, 64) });
  }
  if (typeof message.scan_id !== 'string' || !ACCEPTED_SCAN_ID.test(message.scan_id)) {
    throw invalid('SoftwareInventoryChunk.scan_id must be 8-128 characters of A-Z a-z 0-9 _ . : -', { field: 'scan_id' });
  }
  if (typeof message.task_id !== 'string' || (message.task_id !== '' && !TASK_ID.test(message.task_id))) {
    throw invalid('SoftwareInventoryChunk.task_id must be empty or a task id (tsk_ and 20 hex digits)', { field: 'task_id' });
  }
  const chunkIndex = message.chunk_index;
  if (!Number.isInteger(chunkIndex) || chunkIndex < 0 || chunkIndex >= MAX_CHUNKS_PER_SCAN) {
    throw invalid(`SoftwareInventoryChunk.chunk_index must be 0-${MAX_CHUNKS_PER_SCAN - 1}`, { field: 'chunk_index' });
  }
  const raw = Array.isArray(message.packages) ? message.packages : [];
  if (raw.length > MAX_PACKAGES_PER_CHUNK) {
    throw invalid(`a chunk carries at most ${MAX_PACKAGES_PER_CHUNK} packages, not ${raw.length}`, { field: 'packages', count: raw.length });
  }
  const packages: PackageInput[] = [];
  const skipped = new SkipTally();
  const notUtf8 = invalidUtf8Elements(message, 'packages');
  raw.forEach((pkg, index) => {
    const outcome = notUtf8.has(index) ? { skipped: 'invalid_utf8' as const } : storablePackage(pkg);
    if ('skipped' in outcome) return skipped.add(outcome.skipped, pkg.name);
    for (const reason of outcome.normalised) skipped.add(reason, pkg.name);
    const { name, version, source, architecture, publisher, install_date_unix: installDate } = outcome.record;
    packages.push({ name, version, source, architecture, publisher, installDate: installDate === 0 ? null : installDate });
  });
  for (const entry of hostCounts(message)) {
    if (entry.count <= 0) continue;
    // A newer agent may count under a reason this appliance does not know yet: kept, not refused,
    // so an agent upgrade never costs a scan; the example names the reason.
    if (RECORD_REASONS.has(entry.reason)) skipped.add(entry.reason as RecordReason, entry.example, entry.count, true);
    else skipped.add('unknown_reason', `${entry.reason}: ${entry.example}`, entry.count, true);
  }
  return { scanId: message.scan_id, taskId: message.task_id, chunkIndex, isLast: message.is_last === true, packages, skipped: skipped.list() };
}
