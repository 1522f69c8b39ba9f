import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import type { IngestServiceClient, SoftwareInventoryChunk } from '../../common/proto.ts';
import type { SoftwarePackage } from '../../proto/gen/ctops/ingest/v1/SoftwarePackage.ts';
import { ErrorTally } from './error-tally.ts';
import type { ActiveAgent } from './register-load.ts';
import { LatencyHistogram } from './stats.ts';

/** Packages per chunk: the most the appliance takes in one (the agent sends the same). */
const PACKAGES_PER_CHUNK = 500;

export interface InventoryLoadResult {
  submitted: number;
  completed: number;
  /** Per scan: from its first chunk to the appliance's answer. */
  latency: LatencyHistogram;
  errorCount: number;
  errorsByKind: Record<string, number>;
  errors: string[];
}

/** The same `count` dpkg packages for every agent: what a fleet of identical hosts reports. */
function fleetPackages(count: number): SoftwarePackage[] {
  return Array.from({ length: count }, (_, index) => ({ name: `load-pkg-${index}`, version: '1.0.0', architecture: 'amd64', publisher: 'Debian', source: 'dpkg', install_date_unix: 1_700_000_000 }));
}

/** Submits one scan with SubmitSoftwareInventory, as the agent does: chunks on one client stream, the last flagged. */
function submitScan(client: IngestServiceClient, agent: ActiveAgent, taskId: string, packages: readonly SoftwarePackage[]): Promise<void> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${agent.jwt}`);
  const scanId = `load-${randomUUID()}`;
  return new Promise((resolve, reject) => {
    const call = client.SubmitSoftwareInventory(metadata, { deadline: Date.now() + 120_000 }, (error) => (error ? reject(error) : resolve()));
    const chunks = Math.max(1, Math.ceil(packages.length / PACKAGES_PER_CHUNK));
    for (let index = 0; index < chunks; index += 1) {
      const chunk: SoftwareInventoryChunk = {
        agent_id: agent.agentId, scan_id: scanId, task_id: taskId, chunk_index: index,
        packages: packages.slice(index * PACKAGES_PER_CHUNK, (index + 1) * PACKAGES_PER_CHUNK), is_last: index === chunks - 1,
      };
      call.write(chunk);
    }
    call.end();
  });
}

/**
 * The agents' answers to the appliance's software inventory tasks (it asks every new host for a
 * scan): each a scan of the same `packageCount` packages, submitted over the agent's own connection,
 * counted and timed here.
 */
export class InventoryLoad {
  readonly #packages: SoftwarePackage[];
  readonly #tally = new ErrorTally();
  readonly result: InventoryLoadResult = { submitted: 0, completed: 0, latency: new LatencyHistogram(), errorCount: 0, errorsByKind: this.#tally.byKind, errors: this.#tally.messages };

  constructor(packageCount: number) {
    this.#packages = fleetPackages(packageCount);
  }

  /** Submits the scan the task `taskId` asked for; resolves whether the appliance took it. */
  async submit(client: IngestServiceClient, agent: ActiveAgent, taskId: string): Promise<boolean> {
    const started = performance.now();
    this.result.submitted += 1;
    try {
      await submitScan(client, agent, taskId, this.#packages);
      this.result.completed += 1;
      this.result.latency.record(performance.now() - started);
      return true;
    } catch (error) {
      this.#tally.addCallError('inventory', agent.agentId, error);
      this.result.errorCount = this.#tally.total;
      return false;
    }
  }
}
