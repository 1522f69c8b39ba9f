import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { SoftwareInventoryChunk__Output, SoftwareInventoryResponse } from '../../common/proto.ts';
import type { AgentJwtAuthority } from '../auth/agent-jwt.ts';
import { parseChunk } from '../inventory/chunk.ts';
import type { Stores } from '../store/index.ts';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import { describeHost, mayReceiveWork, mayStream } from '../hosts/status.ts';
import { credentialRefusal } from '../hosts/identity.ts';
import { checkScanTask } from '../inventory/scan-task.ts';
import { inventorySettings } from '../inventory/settings.ts';
import { peerSource } from '../lib/peer-source.ts';
import { authenticateCall } from './bearer.ts';
import type { IngestGuards } from './guards.ts';
import { toServiceError } from './status.ts';

type InventoryCall = grpc.ServerReadableStream<SoftwareInventoryChunk__Output, SoftwareInventoryResponse>;

const DAY_MS = 86_400_000;

export interface InventoryDeps {
  stores: Stores;
  jwt: AgentJwtAuthority;
  log: Logger;
}

/**
 * SubmitSoftwareInventory: one scan per stream, in chunks of at most 500 packages.
 * Authenticated once at open by the JWT in metadata (the host must be active). Every
 * chunk is validated whole before it is written (a package that cannot be stored is skipped and
 * counted with the scan, never a refusal), and written in one transaction; the
 * last chunk (is_last) completes the scan in the same transaction and only then are
 * the host's packages the scan did not see marked removed. A stream that ends or breaks
 * before the last chunk abandons the scan: nothing is marked removed, and the scan does
 * not count as the host's last inventory. task_id is recorded as sent, not checked: the
 * task model that dispatches scans does not exist yet.
 * A scan over the per-host limits (HOST_INVENTORY_LIMITS) fails with ERR_INVENTORY_SCAN_TOO_LARGE
 * and what its earlier chunks added is deleted; completing a scan purges the host's packages
 * removed longer ago than the organisation's retention. Each open spends a point of the host's
 * message rate (ERR_STREAM_RATE_LIMITED beyond it). Refusals go to the aggregated RefusalLog.
 */
export function inventoryHandler(deps: InventoryDeps & Pick<IngestGuards, 'refusals' | 'heartbeatRate'>): grpc.handleClientStreamingCall<SoftwareInventoryChunk__Output, SoftwareInventoryResponse> {
  return (call: InventoryCall, callback: grpc.sendUnaryData<SoftwareInventoryResponse>) => {
    let answered = false;
    const answer = (error: unknown, response?: SoftwareInventoryResponse): void => {
      if (answered) return;
      answered = true;
      if (error === null) callback(null, response);
      else callback(toServiceError(error));
    };
    openStream(call, deps, answer).catch((error: unknown) => {
      deps.refusals.refused({ peer: peerSource(call.getPeer()) }, error, 'inventory stream');
      answer(error);
    });
  };
}

async function openStream(call: InventoryCall, deps: InventoryDeps & Pick<IngestGuards, 'refusals' | 'heartbeatRate'>, answer: (error: unknown, response?: SoftwareInventoryResponse) => void): Promise<void> {
  const { stores, jwt, log, refusals, heartbeatRate } = deps;
  const inventory = stores.softwareInventory;
  const credential = await authenticateCall(call.metadata, jwt, Date.now());
  const agentId = credential.agentId;
  // An open costs a point of the host's one message budget, as a Heartbeat open does: a host
  // reopening scans in a loop (task_id '' needs no task) is refused like one flooding heartbeats.
  await heartbeatRate.take(agentId);
  const host = await stores.hosts.get(agentId);
  if (!host || !mayStream(host)) {
    throw new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the host is ${describeHost(host)}; only active hosts may report inventory`, { host_id: agentId });
  }
  const stale = credentialRefusal(host, credential.issuedAt);
  if (stale) throw stale;
  if (!mayReceiveWork(host)) {
    // Two machines use this key: either one's packages would overwrite the other's until an admin resolves it.
    throw new CtOpsError('ERR_HOST_IDENTITY_CONFLICT', 'another machine is using this host identity; inventory is held until an admin resolves it (hosts resolve)', { host_id: agentId });
  }
  const removedRetentionMs = (await inventorySettings(stores, host.orgId)).removedRetentionDays * DAY_MS;
  let done = call.cancelled;
  /** The scan this stream carries, once its first chunk was accepted. */
  let scanId: string | undefined;
  let nextIndex = 0;

  /** Closes the stream's scan (if any) without marking anything removed, and answers. */
  const stop = (error: CtOpsError | undefined, status: 'abandoned' | 'failed'): void => {
    if (done) return;
    done = true;
    const code = error?.code ?? 'ERR_INVENTORY_SCAN_INCOMPLETE';
    if (scanId !== undefined) {
      try {
        // A scan over the limits is refused whole: what its earlier chunks added goes too.
        const closed = code === 'ERR_INVENTORY_SCAN_TOO_LARGE' ? inventory.discardScan(scanId, agentId, code, Date.now()) : inventory.closeScan(scanId, agentId, status, code, Date.now());
        if (closed) log.info({ host_id: agentId, scan_id: scanId, status, code }, 'inventory scan closed');
      } catch (closeError) {
        log.error({ err: closeError, host_id: agentId, scan_id: scanId }, 'inventory scan could not be closed');
      }
    }
    if (error) answer(error);
  };

  call.on('data', (message: SoftwareInventoryChunk__Output) => {
    if (done) return;
    try {
      const chunk = parseChunk(message, agentId);
      if (scanId !== undefined && chunk.scanId !== scanId) {
        throw new CtOpsError('ERR_INVALID_ARGUMENT', 'one stream carries one scan: scan_id changed mid-stream', { field: 'scan_id', reason: 'scan_changed' });
      }
      if (scanId === undefined) checkScanTask(stores, agentId, chunk.taskId);
      if (scanId !== undefined && chunk.chunkIndex !== nextIndex) {
        throw new CtOpsError('ERR_INVENTORY_SCAN_OUT_OF_ORDER', `chunk_index ${chunk.chunkIndex} received; expected ${nextIndex}`, { field: 'chunk_index', reason: 'chunk_out_of_order', expected: nextIndex });
      }
      const result = inventory.addChunk({ scanId: chunk.scanId, taskId: chunk.taskId, hostId: agentId, chunkIndex: chunk.chunkIndex, packages: chunk.packages, skipped: chunk.skipped, isLast: chunk.isLast, now: Date.now(), removedRetentionMs });
      scanId = chunk.scanId;
      nextIndex = chunk.chunkIndex + 1;
      log.debug({ host_id: agentId, scan_id: scanId, chunk_index: chunk.chunkIndex, packages: chunk.packages.length, added: result.added, unchanged: result.unchanged, duplicates: result.duplicates, skipped: chunk.skipped }, 'inventory chunk stored');
      if (chunk.isLast) {
        done = true;
        const { scan } = result;
        log.info({ host_id: agentId, scan_id: scan.id, task_id: scan.taskId, chunks: scan.chunks, packages_received: scan.packagesReceived, added: scan.added, removed: scan.removed, unchanged: scan.unchanged, skipped: scan.skipped }, 'inventory scan completed');
        answer(null, { scan_id: scan.id, packages_received: scan.packagesReceived, added: scan.added, removed: scan.removed, unchanged: scan.unchanged, skipped: scan.skipped });
      }
    } catch (error) {
      const known = error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error });
      const ours = isStorageFailure(known) || known.code === 'ERR_DATABASE' || known.code === 'ERR_INTERNAL';
      if (isStorageFailure(known)) log.error({ host_id: agentId, scan_id: scanId, ...failureFields(known) }, 'inventory chunk not stored');
      else refusals.refused({ host_id: agentId }, known, 'inventory chunk');
      // A failure of ours (storage, database) may be transient: the scan is abandoned, and the task can
      // ask again. A refusal of what the agent sent is final.
      stop(known, ours ? 'abandoned' : 'failed');
    }
  });
  call.on('end', () => {
    if (done) return;
    const error = scanId === undefined
      ? new CtOpsError('ERR_INVALID_ARGUMENT', 'the stream ended before any chunk', { reason: 'scan_empty' })
      : new CtOpsError('ERR_INVENTORY_SCAN_INCOMPLETE', 'the stream ended before the last chunk (is_last); nothing was marked removed', { reason: 'scan_incomplete', scan_id: scanId, chunks: nextIndex });
    log.warn({ host_id: agentId, scan_id: scanId }, 'inventory stream ended before the last chunk');
    stop(error, 'abandoned');
  });
  const broken = (): void => {
    if (done) return;
    log.warn({ host_id: agentId, scan_id: scanId }, 'inventory stream broke before the last chunk');
    stop(undefined, 'abandoned');
    answer(new CtOpsError('ERR_INVENTORY_SCAN_INCOMPLETE', 'the stream broke before the last chunk', { reason: 'scan_incomplete' }));
  };
  call.on('cancelled', broken);
  call.on('error', broken);
}
