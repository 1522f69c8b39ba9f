import { performance } from 'node:perf_hooks';
import type { IngestServiceClient, RegisterRequest, RegisterResponse__Output } from '../../common/proto.ts';
import type { RegisterSource } from './clients.ts';
import { ErrorTally } from './error-tally.ts';
import { LatencyHistogram } from './stats.ts';

export interface ActiveAgent {
  agentId: string;
  jwt: string;
}

export interface RegisterLoadResult {
  agents: ActiveAgent[];
  /** Every Register's round trip (ms), the challenge's included. */
  latency: LatencyHistogram;
  /** Example messages (the first 100); `errorCount` and `errorsByKind` count them all. */
  errors: string[];
  errorCount: number;
  errorsByKind: Record<string, number>;
  wallMs: number;
}

function register(client: IngestServiceClient, request: RegisterRequest): Promise<RegisterResponse__Output> {
  return new Promise((resolve, reject) => {
    client.Register(request, { deadline: Date.now() + 30_000 }, (error, response) => (error ? reject(error) : resolve(response!)));
  });
}

/**
 * Registers every request with one in flight per client, each client on its own
 * (already open) connection, like that many agents enrolling at once. A request may be a
 * RegisterSource, built on its client when its turn comes (fetching a register challenge).
 */
export async function registerAll(requests: ReadonlyArray<RegisterRequest | RegisterSource>, clients: readonly IngestServiceClient[]): Promise<RegisterLoadResult> {
  const tally = new ErrorTally();
  const result: RegisterLoadResult = { agents: [], latency: new LatencyHistogram(), errors: tally.messages, errorCount: 0, errorsByKind: tally.byKind, wallMs: 0 };
  let next = 0;
  const slot = async (client: IngestServiceClient): Promise<void> => {
    while (next < requests.length) {
      const index = next++;
      const source = requests[index]!;
      const sentAt = performance.now();
      try {
        const request = typeof source === 'function' ? await source(client) : source;
        const response = await register(client, request);
        result.latency.record(performance.now() - sentAt);
        if (response.status === 'AGENT_STATUS_ACTIVE') result.agents.push({ agentId: response.agent_id, jwt: response.jwt });
        else tally.add(`register:${response.status}`, `${request.hostname}: ${response.status}`);
      } catch (error) {
        tally.addCallError('register', `agent ${index}`, error);
      }
    }
  };
  const started = performance.now();
  await Promise.all(clients.map(slot));
  result.wallMs = performance.now() - started;
  result.errorCount = tally.total;
  return result;
}
