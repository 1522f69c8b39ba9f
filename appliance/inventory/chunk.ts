import { checkAgentText } from '../../common/agent-text.ts';
import { CtOpsError } from '../../common/errors.ts';
import type { SoftwareInventoryChunk__Output } from '../../common/proto.ts';
import type { PackageInput } from '../store/software-inventory.ts';

/** The contract: at most 500 packages per chunk. */
export const MAX_PACKAGES_PER_CHUNK = 500;
/** Bounds a scan's chunks, small or empty ones included; its packages are bounded by HOST_INVENTORY_LIMITS (store). */
export const MAX_CHUNKS_PER_SCAN = 400;

export const LIMITS = {
  name: 512,
  version: 256,
  source: 64,
  architecture: 64,
  publisher: 512,
} as const;

/** scan_id and task_id: opaque ids such as UUIDs or ULIDs. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{7,127}$/;
/** Later than any plausible install date (year 2200), in Unix seconds. */
const MAX_INSTALL_DATE_UNIX = 7_258_118_400;

/** A chunk that passed validation: nothing is written for a chunk that did not. */
export interface ValidChunk {
  scanId: string;
  taskId: string;
  chunkIndex: number;
  isLast: boolean;
  packages: PackageInput[];
}

function invalid(message: string, details: Record<string, string | number>): CtOpsError {
  return new CtOpsError('ERR_INVALID_ARGUMENT', message, details);
}

function text(value: unknown, field: string, max: number, required: boolean, index: number): string {
  return checkAgentText(value, `packages[${index}].${field}`, { max, required }, { field, index });
}

/**
 * Validates a whole chunk before anything is written: the agent named in it, the scan
 * and task ids, the chunk index, the package count and every package's fields.
 */
export function parseChunk(message: SoftwareInventoryChunk__Output, agentId: string): ValidChunk {
  if (message.agent_id !== agentId) {
    throw new CtOpsError('ERR_AGENT_MISMATCH', 'SoftwareInventoryChunk.agent_id is not the agent of this JWT', { agent_id: String(message.agent_id).slice(0, 64) });
  }
  if (typeof message.scan_id !== 'string' || !ID_PATTERN.test(message.scan_id)) {
    throw invalid('SoftwareInventoryChunk.scan_id must be 8-128 characters of A-Z a-z 0-9 _ . : -', { field: 'scan_id' });
  }
  if (typeof message.task_id !== 'string' || (message.task_id !== '' && !ID_PATTERN.test(message.task_id))) {
    throw invalid('SoftwareInventoryChunk.task_id must be empty or 8-128 characters of A-Z a-z 0-9 _ . : -', { field: 'task_id' });
  }
  const chunkIndex = message.chunk_index;
  if (!Number.isInteger(chunkIndex) || chunkIndex < 0 || chunkIndex >= MAX_CHUNKS_PER_SCAN) {
    throw invalid(`SoftwareInventoryChunk.chunk_index must be 0-${MAX_CHUNKS_PER_SCAN - 1}`, { field: 'chunk_index' });
  }
  const raw = Array.isArray(message.packages) ? message.packages : [];
  if (raw.length > MAX_PACKAGES_PER_CHUNK) {
    throw invalid(`a chunk carries at most ${MAX_PACKAGES_PER_CHUNK} packages, not ${raw.length}`, { field: 'packages', count: raw.length });
  }
  const packages = raw.map((pkg, index): PackageInput => {
    const installDate = pkg.install_date_unix;
    if (!Number.isSafeInteger(installDate) || installDate < 0 || installDate > MAX_INSTALL_DATE_UNIX) {
      throw invalid(`packages[${index}].install_date_unix must be 0 (unknown) or Unix seconds`, { field: 'install_date_unix', index });
    }
    return {
      name: text(pkg.name, 'name', LIMITS.name, true, index),
      version: text(pkg.version, 'version', LIMITS.version, true, index),
      source: text(pkg.source, 'source', LIMITS.source, false, index),
      architecture: text(pkg.architecture, 'architecture', LIMITS.architecture, false, index),
      publisher: text(pkg.publisher, 'publisher', LIMITS.publisher, false, index),
      installDate: installDate === 0 ? null : installDate,
    };
  });
  return { scanId: message.scan_id, taskId: message.task_id, chunkIndex, isLast: message.is_last === true, packages };
}
