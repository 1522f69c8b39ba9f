import { performance } from 'node:perf_hooks';
import type { IngestServiceClient, RegisterRequest, RegisterResponse__Output } from '../../../common/proto.ts';

export interface ActiveAgent {
  agentId: string;
  jwt: string;
}

export interface RegisterLoadResult {
  agents: ActiveAgent[];
  latenciesMs: number[];
  errors: string[];
  wallMs: number;
}

function register(client: IngestServiceClient, request: RegisterRequest): Promise<RegisterResponse__Output> {
  return new Promise((resolve, reject) => {
    client.Register(request, { deadline: Date.now() + 30_000 }, (error, response) => (error ? reject(error) : resolve(response!)));
  });
}

/**
 * Registers every request with one in flight per client, each client on its own
 * (already open) connection, like that many agents enrolling at once.
 */
export async function registerAll(requests: readonly RegisterRequest[], clients: readonly IngestServiceClient[]): Promise<RegisterLoadResult> {
  const result: RegisterLoadResult = { agents: [], latenciesMs: [], errors: [], wallMs: 0 };
  let next = 0;
  const slot = async (client: IngestServiceClient): Promise<void> => {
    while (next < requests.length) {
      const request = requests[next++]!;
      const sentAt = performance.now();
      try {
        const response = await register(client, request);
        result.latenciesMs.push(performance.now() - sentAt);
        if (response.status === 'AGENT_STATUS_ACTIVE') result.agents.push({ agentId: response.agent_id, jwt: response.jwt });
        else result.errors.push(`${request.hostname}: ${response.status}`);
      } catch (error) {
        result.errors.push(`${request.hostname}: ${(error as Error).message}`);
      }
    }
  };
  const started = performance.now();
  await Promise.all(clients.map(slot));
  result.wallMs = performance.now() - started;
  return result;
}
