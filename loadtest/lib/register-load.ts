import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceError } from '@grpc/grpc-js';
import { Backoff } from '../../agent/lifecycle/backoff.ts';
import { rpcFailure } from '../../agent/transport/failure.ts';
import type { IngestServiceClient, RegisterRequest, RegisterResponse__Output } from '../../common/proto.ts';
import type { RegisterSource } from './clients.ts';
import { ErrorTally } from './error-tally.ts';
import { LatencyHistogram } from './stats.ts';

export interface ActiveAgent {
  agentId: string;
  jwt: string;
}

/** A registered agent and the client (connection) its Register succeeded on. */
export interface RegisteredAgent extends ActiveAgent {
  client: IngestServiceClient;
}

export interface RegisterLoadResult {
  agents: RegisteredAgent[];
  /** Each slot's client at the end (the initial one, or the last made for a retry): the caller closes them, or keeps those its agents stream on. */
  clients: IngestServiceClient[];
  /** Every Register's round trip (ms), the challenge's included. */
  latency: LatencyHistogram;
  /** Example messages (the first 100); `errorCount` and `errorsByKind` count them all. */
  errors: string[];
  errorCount: number;
  errorsByKind: Record<string, number>;
  /** Failed attempts that were tried again, as agents do (none beyond `retryForMs`). */
  retried: number;
  wallMs: number;
}

export interface RegisterOptions {
  /**
   * A failed Register (the challenge's included) is tried again on a new connection after the
   * agent's backoff (agent/lifecycle/backoff.ts; the appliance's retry hint when it gave one), as
   * real agents do, until this long (ms) after the start; a failure after it counts as an error.
   */
  retryForMs: number;
  /** A new client for slot `slot`, replacing the one whose attempt failed (its connection may be gone). */
  newClient: (slot: number) => IngestServiceClient;
}

function register(client: IngestServiceClient, request: RegisterRequest): Promise<RegisterResponse__Output> {
  return new Promise((resolve, reject) => {
    client.Register(request, { deadline: Date.now() + 30_000 }, (error, response) => (error ? reject(error) : resolve(response!)));
  });
}

/**
 * Registers every request with one in flight per client, each client on its own
 * (already open) connection, like that many agents enrolling at once. A request may be a
 * RegisterSource, built on its client when its turn comes (fetching a register challenge). With
 * `options`, a failed attempt is tried again within `options.retryForMs` (RegisterOptions); without,
 * it counts as an error at once. The caller closes `result.clients` (every client not closed here:
 * `initialClients` or their replacements), or keeps the ones it streams on (RegisteredAgent.client).
 */
export async function registerAll(requests: ReadonlyArray<RegisterRequest | RegisterSource>, initialClients: readonly IngestServiceClient[], options?: RegisterOptions): Promise<RegisterLoadResult> {
  const tally = new ErrorTally();
  const clients = [...initialClients];
  const result: RegisterLoadResult = { agents: [], clients, latency: new LatencyHistogram(), errors: tally.messages, errorCount: 0, errorsByKind: tally.byKind, retried: 0, wallMs: 0 };
  const started = performance.now();
  let next = 0;
  const slot = async (slotIndex: number): Promise<void> => {
    while (next < requests.length) {
      const index = next++;
      const source = requests[index]!;
      const backoff = new Backoff(Math.random);
      for (;;) {
        const client = clients[slotIndex]!;
        const sentAt = performance.now();
        try {
          const request = typeof source === 'function' ? await source(client) : source;
          const response = await register(client, request);
          result.latency.record(performance.now() - sentAt);
          if (response.status === 'AGENT_STATUS_ACTIVE') result.agents.push({ agentId: response.agent_id, jwt: response.jwt, client });
          else tally.add(`register:${response.status}`, `${request.hostname}: ${response.status}`);
          break;
        } catch (error) {
          // The hint as the agent reads it from a failed call's status.
          const waitMs = backoff.next(rpcFailure(error as ServiceError).retryAfterMs);
          if (options === undefined || performance.now() + waitMs - started >= options.retryForMs) {
            tally.addCallError('register', `agent ${index}`, error);
            break;
          }
          result.retried += 1;
          client.close();
          await sleep(waitMs);
          clients[slotIndex] = options.newClient(slotIndex);
        }
      }
    }
  };
  await Promise.all(clients.map((_, slotIndex) => slot(slotIndex)));
  result.wallMs = performance.now() - started;
  result.errorCount = tally.total;
  return result;
}
