import { CtOpsError } from '../../common/errors.ts';
import { newId } from '../../common/ids.ts';
import { describeSkipped, type SkippedPackages } from '../../common/inventory-records.ts';
import type { SoftwareInventoryChunk } from '../../common/proto.ts';
import { collectInventory, DEFAULT_TIMEOUT_MS, type InventoryOptions, type InventoryResult, type SoftwarePackage } from '../inventory/index.ts';
import type { IngestTransport } from '../transport/types.ts';
import type { TaskHandler } from './runner.ts';

/** The spec's chunk size; the appliance refuses larger chunks. */
export const INVENTORY_CHUNK_SIZE = 500;

export interface InventoryTaskDeps {
  readonly transport: IngestTransport;
  /** The current agent id and JWT (refreshed on the heartbeat stream while the scan runs). */
  readonly credential: () => { agentId: string; jwt: string } | undefined;
  readonly collect?: (options: InventoryOptions) => Promise<InventoryResult>;
}

/**
 * software_inventory: collect the installed software, then submit it as one scan in chunks of
 * 500 tied to the task. A collector failure fails the task before anything is sent, so a failed
 * collection never reaches the appliance as an empty list that would mark everything removed.
 */
export function softwareInventoryHandler(deps: InventoryTaskDeps): TaskHandler {
  const collect = deps.collect ?? collectInventory;
  return async (task, signal) => {
    const sources = task.software_inventory;
    // Leave the submission half of the task's time.
    const timeoutMs = Math.max(1_000, Math.min(DEFAULT_TIMEOUT_MS, Number(task.timeout_ms) / 2 || DEFAULT_TIMEOUT_MS));
    const inventory = await collect({ timeoutMs, signal, optionalSources: { snap: sources?.snap === true, flatpak: sources?.flatpak === true, windowsStore: sources?.windows_store === true } });
    signal.throwIfAborted();
    if (inventory.packages.length === 0) {
      // The appliance refuses an empty scan (it would mark every package removed); say why here.
      const skippedHere = describeSkipped(inventory.skipped);
      const what = skippedHere ? `listed no package that can be stored (skipped: ${skippedHere})` : 'listed no installed packages';
      throw new CtOpsError('ERR_INVENTORY_COLLECTOR_FAILED', `${inventory.sources.join(', ')} ${what}; an empty inventory is not sent`, { reason: 'empty' });
    }
    const credential = deps.credential();
    if (!credential) throw new CtOpsError('ERR_JWT_MISSING', 'the agent has no credential to submit the inventory with');
    const scanId = newId('scn');
    const chunks = toChunks(inventory.packages, { agentId: credential.agentId, scanId, taskId: task.task_id }, inventory.skipped);
    const submitted = await deps.transport.submitInventory(credential.jwt, chunks, signal);
    signal.throwIfAborted();
    if (!submitted.ok) {
      const { failure } = submitted;
      throw new CtOpsError(failure.errorCode ?? 'ERR_INGEST_UNREACHABLE', `the appliance did not take the inventory: ${failure.details}`, { grpc_code: failure.grpcCode, scan_id: scanId });
    }
    const { added, removed, unchanged, packages_received: received, skipped } = submitted.response;
    // Records skipped here (lines the parsers could not read) and by the appliance (records it cannot store): counted, never a failure.
    const skippedHere = describeSkipped(inventory.skipped);
    const skippedThere = describeSkipped(skipped.filter((entry) => !entry.on_host));
    const notes = [skippedHere && `skipped on the host: ${skippedHere}`, skippedThere && `skipped by the appliance: ${skippedThere}`].filter(Boolean).join('; ');
    return {
      kind: 'done',
      message: `${received} packages from ${inventory.sources.join(', ')} in ${chunks.length} chunks: ${added} added, ${removed} removed, ${unchanged} unchanged${notes ? `; ${notes}` : ''}`,
      result: { scan_id: scanId, packages: received, chunks: chunks.length, sources: inventory.sources, duplicates_removed: inventory.duplicatesRemoved, added, removed, unchanged, skipped_on_host: inventory.skipped, skipped_by_appliance: skipped.filter((entry) => !entry.on_host) },
    };
  };
}

/** Chunks of at most 500 packages, the last one flagged is_last and carrying what the host skipped (kept with the scan). */
export function toChunks(packages: readonly SoftwarePackage[], ids: { agentId: string; scanId: string; taskId: string }, skipped: readonly SkippedPackages[] = []): SoftwareInventoryChunk[] {
  const count = Math.ceil(packages.length / INVENTORY_CHUNK_SIZE);
  return Array.from({ length: count }, (_, index) => ({
    agent_id: ids.agentId,
    scan_id: ids.scanId,
    task_id: ids.taskId,
    chunk_index: index,
    packages: packages.slice(index * INVENTORY_CHUNK_SIZE, (index + 1) * INVENTORY_CHUNK_SIZE).map((pkg) => ({ ...pkg })),
    is_last: index === count - 1,
    ...(index === count - 1 && skipped.length > 0 ? { skipped: skipped.map((entry) => ({ reason: entry.reason, count: entry.count, example: entry.example })) } : {}),
  }));
}
