import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { DATABASE_FILE } from '../../appliance/serve.ts';
import { sqliteKysely } from '../../appliance/store/dialects.ts';
import { SoftwareInventoryStore } from '../../appliance/store/software-inventory.ts';
import type { IngestServiceClient } from '../../common/proto.ts';
import type { SoftwareInventoryChunk } from '../../proto/gen/ctops/ingest/v1/SoftwareInventoryChunk.ts';
import type { SoftwareInventoryResponse__Output } from '../../proto/gen/ctops/ingest/v1/SoftwareInventoryResponse.ts';
import type { SoftwarePackage } from '../../proto/gen/ctops/ingest/v1/SoftwarePackage.ts';
import { TestAppliance } from './appliance.ts';
import { ingestClient, type CallResult } from './ingest-client.ts';
import { enrolHost } from './ingest-fixture.ts';

export type InventoryOutcome = CallResult<SoftwareInventoryResponse__Output>;

/** A SubmitSoftwareInventory client stream: write chunks, then end it (or not). */
export class InventoryStream {
  readonly call: grpc.ClientWritableStream<SoftwareInventoryChunk>;
  readonly result: Promise<InventoryOutcome>;

  constructor(client: IngestServiceClient, jwt: string) {
    const metadata = new grpc.Metadata();
    if (jwt) metadata.set('authorization', `Bearer ${jwt}`);
    let settle: (outcome: InventoryOutcome) => void = () => undefined;
    this.result = new Promise((resolve) => (settle = resolve));
    this.call = client.SubmitSoftwareInventory(metadata, { deadline: Date.now() + 30_000 }, (error, response) => {
      if (error) settle({ ok: false, code: error.code, details: error.details });
      else settle({ ok: true, value: response as SoftwareInventoryResponse__Output });
    });
  }

  write(chunk: SoftwareInventoryChunk): this {
    this.call.write(chunk);
    return this;
  }

  end(): Promise<InventoryOutcome> {
    this.call.end();
    return this.result;
  }
}

/** Sends a whole scan on one stream and ends it. */
export async function submitScan(client: IngestServiceClient, jwt: string, chunks: readonly SoftwareInventoryChunk[]): Promise<InventoryOutcome> {
  const stream = new InventoryStream(client, jwt);
  for (const chunk of chunks) stream.write(chunk);
  return stream.end();
}

/** pkg-<from> … pkg-<to - 1>, version 1.0.0 from dpkg, unless `extra` says otherwise. */
export function packages(from: number, to: number, extra: Partial<SoftwarePackage> = {}): SoftwarePackage[] {
  return Array.from({ length: to - from }, (_, offset) => ({
    name: `pkg-${String(from + offset).padStart(5, '0')}`,
    version: '1.0.0',
    architecture: 'amd64',
    publisher: 'Debian',
    source: 'dpkg',
    install_date_unix: 1_700_000_000,
    ...extra,
  }));
}

/** Splits packages into chunks of at most 500, the last one flagged. */
export function chunksOf(agentId: string, scanId: string, all: SoftwarePackage[], size = 500): SoftwareInventoryChunk[] {
  const chunks: SoftwareInventoryChunk[] = [];
  for (let index = 0; index * size < all.length; index += 1) {
    chunks.push({ agent_id: agentId, scan_id: scanId, task_id: '', chunk_index: index, packages: all.slice(index * size, (index + 1) * size), is_last: (index + 1) * size >= all.length });
  }
  return chunks;
}

/** Enrols a new identity with an auto-approve token: an active host and its JWT. */
export async function activeAgent(appliance: TestAppliance, client: IngestServiceClient, hostname: string): Promise<{ agentId: string; jwt: string }> {
  const { hostId, jwt } = await enrolHost(appliance, client, { hostname });
  return { agentId: hostId, jwt };
}

/**
 * A real appliance, an ingest client, and a read-only second handle on its database (WAL allows it
 * beside the appliance's own) through which a test reads what the inventory store kept.
 */
export async function startInventoryAppliance(): Promise<{ appliance: TestAppliance; client: IngestServiceClient; store: SoftwareInventoryStore; dispose(): Promise<void> }> {
  const appliance = await TestAppliance.start();
  const client = ingestClient(appliance.address, appliance.caCert);
  const db = new Database(join(appliance.dataDir, DATABASE_FILE), { readonly: true });
  return {
    appliance,
    client,
    store: new SoftwareInventoryStore(sqliteKysely(db), 'sqlite'),
    async dispose() {
      db.close();
      client.close();
      await appliance.dispose();
    },
  };
}
