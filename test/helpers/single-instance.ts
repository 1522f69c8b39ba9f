import { after } from 'node:test';
import type { Logger } from 'pino';
import { ClusterService } from '../../appliance/cluster/service.ts';
import type { Stores } from '../../appliance/store/index.ts';

/**
 * The cluster of a SQLite appliance, not started: one instance with nobody else to hear from — so
 * the handlers are never called — and no lease yet (for services that only publish and run passes).
 */
export function onlyInstance(stores: Stores, log: Logger): ClusterService {
  return new ClusterService({
    stores,
    log,
    listenUrl: undefined,
    handlers: {
      signal: () => undefined,
      lostStreams: async () => undefined,
      resync: async () => undefined,
    },
  });
}

/**
 * The cluster of a SQLite appliance as serve.ts starts it: onlyInstance with its lease taken (so the
 * hosts whose streams it holds show online). Stopped after the test file.
 */
export async function singleInstance(stores: Stores, log: Logger): Promise<ClusterService> {
  const cluster = onlyInstance(stores, log);
  await cluster.start();
  after(() => cluster.stop());
  return cluster;
}
