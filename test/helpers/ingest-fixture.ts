import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import type { IngestServiceClient } from '../../common/proto.ts';
import { TestAppliance, type ApplianceOptions } from './appliance.ts';
import { callRegister, HeartbeatStream, ingestClient, newIdentity, signedRegister, type TestIdentity } from './ingest-client.ts';
import { waitFor } from './wait.ts';

export interface Enrolled {
  hostId: string;
  /** Empty unless the host is active. */
  jwt: string;
  identity: TestIdentity;
  token: string;
}

/**
 * Enrols a new identity (or the one given) with a fresh token: auto-approved (active, with a
 * JWT) unless `autoApprove` is false (pending).
 */
export async function enrolHost(
  appliance: TestAppliance,
  client: IngestServiceClient,
  options: { hostname?: string; identity?: TestIdentity; autoApprove?: boolean } = {},
): Promise<Enrolled> {
  const autoApprove = options.autoApprove ?? true;
  const identity = options.identity ?? newIdentity(options.hostname);
  const { token } = await appliance.createToken(...(autoApprove ? ['--auto-approve'] : []));
  const registered = await callRegister(client, signedRegister(identity, token));
  assert.ok(registered.ok, JSON.stringify(registered));
  assert.equal(registered.value.status, autoApprove ? 'AGENT_STATUS_ACTIVE' : 'AGENT_STATUS_PENDING');
  return { hostId: registered.value.agent_id, jwt: registered.value.jwt, identity, token };
}

/**
 * Approves a pending host through the appliance's admin CLI, then registers it again (by its key, no
 * token): resolves with the JWT of that Register, which answers it active.
 */
export async function approveAndRegister(appliance: TestAppliance, client: IngestServiceClient, pending: Enrolled): Promise<string> {
  assert.equal((await appliance.cli('hosts', 'approve', pending.hostId)).code, 0, 'approved through the admin API');
  const approved = await callRegister(client, signedRegister(pending.identity, ''));
  assert.ok(approved.ok, JSON.stringify(approved));
  assert.equal(approved.value.status, 'AGENT_STATUS_ACTIVE');
  return approved.value.jwt;
}

/** A real appliance and a gRPC client to it, for the tests of one describe block. */
export class IngestFixture {
  #appliance: TestAppliance | undefined;
  #client: IngestServiceClient | undefined;
  readonly #streams: HeartbeatStream[] = [];

  get appliance(): TestAppliance {
    assert.ok(this.#appliance, 'the appliance starts in before()');
    return this.#appliance;
  }

  get client(): IngestServiceClient {
    assert.ok(this.#client, 'the client is made in before()');
    return this.#client;
  }

  async start(options: ApplianceOptions): Promise<void> {
    this.#appliance = await TestAppliance.start(options);
    this.#client = ingestClient(this.#appliance.address, this.#appliance.caCert);
  }

  async stop(): Promise<void> {
    for (const stream of this.#streams) stream.call.cancel();
    this.#client?.close();
    await this.#appliance?.dispose();
  }

  enrol(options: { hostname?: string; identity?: TestIdentity; autoApprove?: boolean } = {}): Promise<Enrolled> {
    return enrolHost(this.appliance, this.client, options);
  }

  /** Opens a Heartbeat stream and waits for the ack of its first heartbeat (sequence 1); closed after the tests. */
  async openStream(hostId: string, jwt: string, metadata: Record<string, string> = {}): Promise<HeartbeatStream> {
    const stream = new HeartbeatStream(this.client, jwt, metadata);
    this.#streams.push(stream);
    stream.send(hostId, 1);
    await waitFor('first ack', () => stream.acks().includes(1));
    return stream;
  }
}

/** Starts an IngestFixture before the tests of the enclosing describe block and stops it after them. */
export function useIngestFixture(options: ApplianceOptions = {}): IngestFixture {
  const fixture = new IngestFixture();
  before(() => fixture.start(options));
  after(() => fixture.stop());
  return fixture;
}
