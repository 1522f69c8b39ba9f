import { mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CtOpsError } from '../common/errors.ts';
import { PRODUCT_VERSION } from '../common/version.ts';
import { createFirstAdmin, type FirstAdmin } from './admin/credentials.ts';
import { AgentJwtAuthority } from './auth/agent-jwt.ts';
import type { ApplianceConfig } from './config/load.ts';
import { startGrpcServer } from './grpc/server.ts';
import { VitalsWriter } from './heartbeat/vitals-writer.ts';
import { startHttpServer } from './http/server.ts';
import { ensureTlsMaterial, type TlsMaterial } from './pki/certificates.ts';
import { PUBLIC_FILE_MODE, SECRET_FILE_MODE, writeFileAtomic } from './pki/files.ts';
import { ensureJwtSigningKey } from './pki/jwt-signing-key.ts';
import { ensureBundleKey, ensureReleasePublicKey, type ReleaseKeySource } from './pki/signing-keys.ts';
import { keyIdHex } from '../common/minisign.ts';
import { PresenceRegistry } from './presence/registry.ts';
import { openStores } from './store/index.ts';
import { expireDue } from './tasks/index.ts';
import { TaskDispatcher } from './tasks/dispatcher.ts';
import { onTaskFinished } from './hosts/task-finished.ts';
import { sweepInventory } from './inventory/sweeper.ts';

/** Files under the data directory that the admin CLI reads to find and call the admin API. */
export const ENDPOINT_FILE = 'appliance.json';
export const CLI_CREDENTIAL_FILE = 'admin-cli.token';
export const DATABASE_FILE = 'appliance.db';
const MAINTENANCE_INTERVAL_MS = 3_600_000;
/** Task deadlines are minutes long; checking every 15 s keeps a timeout within 15 s of due. */
const TASK_SWEEP_INTERVAL_MS = 15_000;

export interface RunningAppliance {
  grpcPort: number;
  httpPort: number;
  tls: TlsMaterial;
  /** minisign key ids, for people to compare with what reached the hosts. */
  bundleKeyId: string;
  releaseKeyId: string | undefined;
  releaseKeySource: ReleaseKeySource;
  firstAdmin: FirstAdmin | undefined;
  stop(): Promise<void>;
}

/** Starts the appliance: data directory, database, keys, gRPC and HTTPS listeners. */
export async function startAppliance(config: ApplianceConfig, log: Logger): Promise<RunningAppliance> {
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(config.dataDir, 0o700);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot create the data directory ${config.dataDir}`, { path: config.dataDir }, { cause });
  }
  const now = new Date();
  const tls = await ensureTlsMaterial(config.dataDir, config.sans, now);
  const jwtKey = await ensureJwtSigningKey(config.dataDir);
  const bundleKey = ensureBundleKey(config.dataDir);
  const release = ensureReleasePublicKey(config.dataDir, config.releasePublicKeyFile);
  if (release.source === 'development') log.warn({ path: 'release.pub' }, 'trusting the development release key from .dev-keys/: give a production appliance its release key');
  if (release.source === 'none') log.warn('no agent release public key: set release_public_key_file to build install bundles');
  const stores = openStores(join(config.dataDir, DATABASE_FILE));
  const org = stores.organisations.ensureDefault(now.getTime());
  const firstAdmin = createFirstAdmin(stores.adminCredentials, now.getTime());
  if (firstAdmin) writeFileAtomic(join(config.dataDir, CLI_CREDENTIAL_FILE), `${firstAdmin.cliToken}\n`, SECRET_FILE_MODE);

  const jwt = new AgentJwtAuthority(jwtKey, config.jwtTtlSecs);
  const presence: PresenceRegistry = new PresenceRegistry((agentId, reason) => {
    stores.hosts.recordDisconnect(agentId, Date.now());
    tasks.disconnected(agentId);
    log.info({ host_id: agentId, reason }, 'host offline');
  });
  const tasks = new TaskDispatcher({ stores, presence, log, onFinished: (task) => onTaskFinished({ stores, presence, log }, task) });
  const vitals = new VitalsWriter(stores, log, config.vitalsRetentionMs);
  const abandonedScans = stores.softwareInventory.abandonOpenScans(now.getTime());
  if (abandonedScans > 0) log.warn({ scans: abandonedScans }, 'inventory scans cut off by the last stop marked abandoned');
  const maintenance = setInterval(() => stores.registerNonces.prune(Date.now()), MAINTENANCE_INTERVAL_MS);
  const sweepTasks = (): void => {
    const swept = expireDue(stores, Date.now());
    if (swept.timedOut.length + swept.expired.length > 0) log.info({ timed_out: swept.timedOut, expired: swept.expired }, 'tasks swept');
  };
  sweepTasks();
  const taskSweeper = setInterval(sweepTasks, TASK_SWEEP_INTERVAL_MS);
  const softwareSweeper = setInterval(() => {
    try {
      sweepInventory({ stores, presence, tasks, log }, Date.now());
    } catch (error) {
      log.error({ err: error }, 'software sweeper failed');
    }
  }, config.inventorySweepSecs * 1000);
  const deps = { stores, jwt, presence, vitals, tasks, log, orgId: org.id, dataDir: config.dataDir, pendingPollSecs: config.pendingPollSecs, jwtKey };

  let grpcServer;
  let httpServer;
  try {
    grpcServer = await startGrpcServer(config.listen, config.grpcPort, tls, deps);
    httpServer = await startHttpServer(config.listen, config.httpPort, tls, deps);
  } catch (error) {
    await grpcServer?.stop(0);
    clearInterval(maintenance);
    clearInterval(taskSweeper);
    clearInterval(softwareSweeper);
    vitals.close();
    stores.close();
    throw error;
  }
  const grpcPort = grpcServer.port;
  const httpPort = httpServer.port;
  const apiHost = config.listen === '0.0.0.0' || config.listen === '::' ? '127.0.0.1' : config.listen;
  writeFileAtomic(
    join(config.dataDir, ENDPOINT_FILE),
    `${JSON.stringify({ admin_api: `https://${apiHost.includes(':') ? `[${apiHost}]` : apiHost}:${httpPort}`, grpc_port: grpcPort, pid: process.pid }, null, 2)}\n`,
    PUBLIC_FILE_MODE,
  );
  log.info({ version: PRODUCT_VERSION, data_dir: config.dataDir, listen: config.listen, grpc_port: grpcPort, http_port: httpPort, ca_fingerprint: tls.caFingerprint, bundle_key_id: keyIdHex(bundleKey.keyId), release_key_id: release.key && keyIdHex(release.key.keyId), jwt_kid: jwtKey.kid, sans: config.sans }, 'appliance started');

  const grpc = grpcServer;
  const http = httpServer;
  return {
    grpcPort,
    httpPort,
    tls,
    bundleKeyId: keyIdHex(bundleKey.keyId),
    releaseKeyId: release.key && keyIdHex(release.key.keyId),
    releaseKeySource: release.source,
    firstAdmin,
    stop: async () => {
      clearInterval(maintenance);
      clearInterval(taskSweeper);
      clearInterval(softwareSweeper);
      presence.closeAll(new CtOpsError('ERR_INGEST_UNREACHABLE', 'the appliance is shutting down'));
      await Promise.all([grpc.stop(5000), http.stop()]);
      vitals.close();
      stores.close();
      log.info('appliance stopped');
    },
  };
}
