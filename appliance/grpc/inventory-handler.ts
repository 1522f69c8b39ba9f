import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { SoftwareInventoryChunk__Output, SoftwareInventoryResponse } from '../../common/proto.ts';
import type { AgentJwtAuthority } from '../auth/agent-jwt.ts';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import { parseChunk } from '../inventory/chunk.ts';
import type { ScanClosingEvent } from '../inventory/scan-states.ts';
import { nextInventoryStreamState, type InventoryStreamEvent, type InventoryStreamState } from '../inventory/stream-states.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { Services } from '../services.ts';
import { authenticateCall } from './bearer.ts';
import type { IngestGuards } from './guards.ts';
import { toServiceError } from './status.ts';

type InventoryCall = grpc.ServerReadableStream<SoftwareInventoryChunk__Output, SoftwareInventoryResponse>;

export interface InventoryDeps {
  services: Pick<Services, 'inventory'>;
  jwt: AgentJwtAuthority;
  log: Logger;
}

/**
 * SubmitSoftwareInventory: one scan per stream, in chunks of at most 500 packages. Translates the
 * call for InventoryService and steps the stream's lifecycle (inventory/stream-states.ts) with each
 * of its events, one at a time: the open, every chunk (the call is paused while one is stored, so a
 * fast sender waits instead of filling memory), the end, a break. The answer is given once, on the
 * move into `closed`.
 * Authenticated once at open by the JWT in metadata; each open spends a point of the host's message
 * rate (ERR_STREAM_RATE_LIMITED beyond it). Every chunk is validated whole before it is written (a
 * package that cannot be stored is skipped and counted with the scan, never a refusal), and written
 * in one transaction that first asks whether the host may still report; the last chunk (is_last)
 * completes the scan in the same transaction and only then are the host's packages the scan did
 * not see marked removed. A stream that ends or breaks before the last chunk abandons the scan
 * (scan-states.ts cut_off): nothing is marked removed, and the scan does not count as the host's
 * last inventory. A refused chunk fails the scan; one over the per-host limits
 * (ERR_INVENTORY_SCAN_TOO_LARGE) also loses what its earlier chunks added. Refusals go to the
 * aggregated RefusalLog.
 */
export function inventoryHandler(deps: InventoryDeps & Pick<IngestGuards, 'refusals' | 'heartbeatRate'>): grpc.handleClientStreamingCall<SoftwareInventoryChunk__Output, SoftwareInventoryResponse> {
  return (call: InventoryCall, callback: grpc.sendUnaryData<SoftwareInventoryResponse>) => new InventoryStream(call, callback, deps).start();
}

class InventoryStream {
  readonly #call: InventoryCall;
  readonly #callback: grpc.sendUnaryData<SoftwareInventoryResponse>;
  readonly #deps: InventoryDeps & Pick<IngestGuards, 'refusals' | 'heartbeatRate'>;
  #state: InventoryStreamState = 'opening';
  /** The call's events, handled one after the other: a chunk is stored before the next is read. */
  #events: Promise<void> = Promise.resolve();
  #agentId = '';
  /** The scan this stream carries, once its first chunk was stored. */
  #scanId: string | undefined;
  #nextIndex = 0;

  constructor(call: InventoryCall, callback: grpc.sendUnaryData<SoftwareInventoryResponse>, deps: InventoryDeps & Pick<IngestGuards, 'refusals' | 'heartbeatRate'>) {
    this.#call = call;
    this.#callback = callback;
    this.#deps = deps;
  }

  start(): void {
    const call = this.#call;
    this.#handle(() => this.#open());
    call.on('data', (message: SoftwareInventoryChunk__Output) => {
      call.pause();
      this.#handle(async () => {
        await this.#chunk(message);
        if (this.#state !== 'closed') call.resume();
      });
    });
    call.on('end', () => this.#handle(() => this.#ended()));
    const broke = (): void => this.#handle(() => this.#broke());
    call.on('cancelled', broke);
    call.on('error', broke);
  }

  /** Queues the handling of one event after the ones before it. */
  #handle(work: () => Promise<void>): void {
    this.#events = this.#events.then(async () => {
      if (this.#state === 'closed') return;
      try {
        await work();
      } catch (error) {
        this.#deps.log.error({ host_id: this.#agentId, scan_id: this.#scanId, ...failureFields(error) }, 'inventory stream event not handled');
      }
    });
  }

  /** Moves the stream; false when the event does not apply in its state (tables in stream-states.ts). */
  #step(event: InventoryStreamEvent): boolean {
    const next = nextInventoryStreamState(this.#state, event);
    if (next === undefined) return false;
    this.#state = next;
    return true;
  }

  async #open(): Promise<void> {
    const { services, jwt, refusals, heartbeatRate } = this.#deps;
    try {
      const credential = await authenticateCall(this.#call.metadata, jwt, Date.now());
      this.#agentId = credential.agentId;
      // An open costs a point of the host's one message budget, as a Heartbeat open does: a host
      // reopening scans in a loop (task_id '' needs no task) is refused like one flooding heartbeats.
      await heartbeatRate.take(credential.agentId);
      await services.inventory.checkMayReport(credential.agentId, credential.issuedAt);
      this.#step('authenticated');
    } catch (error) {
      refusals.refused({ peer: peerSource(this.#call.getPeer()) }, error, 'inventory stream');
      if (this.#step('refused')) this.#callback(toServiceError(error));
    }
  }

  async #chunk(message: SoftwareInventoryChunk__Output): Promise<void> {
    const { services, log, refusals } = this.#deps;
    const agentId = this.#agentId;
    try {
      const chunk = parseChunk(message, agentId);
      if (this.#scanId !== undefined && chunk.scanId !== this.#scanId) {
        throw new CtOpsError('ERR_INVALID_ARGUMENT', 'one stream carries one scan: scan_id changed mid-stream', { field: 'scan_id', reason: 'scan_changed' });
      }
      if (this.#scanId !== undefined && chunk.chunkIndex !== this.#nextIndex) {
        throw new CtOpsError('ERR_INVENTORY_SCAN_OUT_OF_ORDER', `chunk_index ${chunk.chunkIndex} received; expected ${this.#nextIndex}`, { field: 'chunk_index', reason: 'chunk_out_of_order', expected: this.#nextIndex });
      }
      const result = await services.inventory.acceptChunk(agentId, chunk, { now: Date.now(), opensStream: this.#state === 'awaiting-first-chunk' });
      this.#scanId = chunk.scanId;
      this.#nextIndex = chunk.chunkIndex + 1;
      log.debug({ host_id: agentId, scan_id: chunk.scanId, chunk_index: chunk.chunkIndex, packages: chunk.packages.length, added: result.added, unchanged: result.unchanged, duplicates: result.duplicates, skipped: chunk.skipped }, 'inventory chunk stored');
      if (!chunk.isLast) {
        this.#step('chunk_stored');
        return;
      }
      this.#step('last_chunk_stored');
      const { scan } = result;
      log.info({ host_id: agentId, scan_id: scan.id, task_id: scan.taskId, chunks: scan.chunks, packages_received: scan.packagesReceived, added: scan.added, removed: scan.removed, unchanged: scan.unchanged, skipped: scan.skipped }, 'inventory scan completed');
      this.#callback(null, { scan_id: scan.id, packages_received: scan.packagesReceived, added: scan.added, removed: scan.removed, unchanged: scan.unchanged, skipped: scan.skipped });
    } catch (error) {
      const known = error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error });
      if (isStorageFailure(known)) log.error({ host_id: agentId, scan_id: this.#scanId, ...failureFields(known) }, 'inventory chunk not stored');
      else refusals.refused({ host_id: agentId }, known, 'inventory chunk');
      this.#step('refused');
      await this.#closeScan(scanEventFor(known), known.code);
      this.#callback(toServiceError(known));
    }
  }

  async #ended(): Promise<void> {
    const scanId = this.#scanId;
    if (!this.#step('ended')) return;
    this.#deps.log.warn({ host_id: this.#agentId, scan_id: scanId }, 'inventory stream ended before the last chunk');
    if (scanId === undefined) {
      this.#callback(toServiceError(new CtOpsError('ERR_INVALID_ARGUMENT', 'the stream ended before any chunk', { reason: 'scan_empty' })));
      return;
    }
    await this.#closeScan('cut_off', 'ERR_INVENTORY_SCAN_INCOMPLETE');
    this.#callback(toServiceError(new CtOpsError('ERR_INVENTORY_SCAN_INCOMPLETE', 'the stream ended before the last chunk (is_last); nothing was marked removed', { reason: 'scan_incomplete', scan_id: scanId, chunks: this.#nextIndex })));
  }

  async #broke(): Promise<void> {
    const opened = this.#state !== 'opening';
    if (!this.#step('broke')) return;
    if (opened) this.#deps.log.warn({ host_id: this.#agentId, scan_id: this.#scanId }, 'inventory stream broke before the last chunk');
    await this.#closeScan('cut_off', 'ERR_INVENTORY_SCAN_INCOMPLETE');
    // The client is gone: the answer only settles the call on the server side.
    this.#callback(toServiceError(new CtOpsError('ERR_INVENTORY_SCAN_INCOMPLETE', 'the stream broke before the last chunk', { reason: 'scan_incomplete' })));
  }

  /** Closes the stream's scan, if it has one (scan-states.ts); a failure to do so is logged, the answer still goes. */
  async #closeScan(event: ScanClosingEvent, errorCode: string): Promise<void> {
    if (this.#scanId === undefined) return;
    try {
      await this.#deps.services.inventory.closeScan(this.#agentId, this.#scanId, event, errorCode, Date.now());
    } catch (error) {
      this.#deps.log.error({ host_id: this.#agentId, scan_id: this.#scanId, ...failureFields(error) }, 'inventory scan could not be closed');
    }
  }
}

/**
 * How a refused chunk closes the stream's scan: a failure of ours (storage, database) may be
 * transient, so the scan is abandoned and the task can ask again; a scan over the limits is
 * refused whole; any other refusal of what the agent sent is final.
 */
function scanEventFor(error: CtOpsError): ScanClosingEvent {
  if (error.code === 'ERR_INVENTORY_SCAN_TOO_LARGE') return 'over_limits';
  const ours = isStorageFailure(error) || error.code === 'ERR_DATABASE' || error.code === 'ERR_INTERNAL';
  return ours ? 'cut_off' : 'refused';
}
