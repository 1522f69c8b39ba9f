import { after } from 'node:test';
import type { Logger } from 'pino';
import { ClusterService } from '../../appliance/cluster/service.ts';
import type { Stores } from '../../appliance/store/index.ts';

/**
 * The cluster of a SQLite appliance as serve.ts starts it: one instance, its lease taken (so the
 * hosts whose streams it holds show online), nobody else to hear from — so the handlers are never
 * called. Stopped after the test file.
 */
export async function singleInstance(stores: Stores, log: Logger): Promise<ClusterService> {
  const cluster = new ClusterService({
    stores,
    log,
    listenUrl: undefined,
    handlers: {
      signal: () => undefined,
      lostStreams: async () => undefined,
      resync: async () => undefined,
    },
  });
  await cluster.start();
  after(() => cluster.stop());
  return cluster;
}
