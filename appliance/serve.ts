import { mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CtOpsError } from '../common/errors.ts';
import { unicodeHostName } from '../common/host-name.ts';
import { PRODUCT_VERSION } from '../common/version.ts';
import { AdminAccountService, createFirstAdmin, type FirstAdmin } from './admin/accounts.ts';
import { LoginThrottle } from './admin/login-throttle.ts';
import { AuditService } from './audit/service.ts';
import { AgentJwtAuthority } from './auth/agent-jwt.ts';
import { RegisterChallenges } from './enrolment/register-challenge.ts';
import { EnrolmentService } from './enrolment/service.ts';
import type { ApplianceConfig } from './config/load.ts';
import { startGrpcServer } from './grpc/server.ts';
import { stoppingError } from './heartbeat/stopping.ts';
import { VitalsWriter } from './heartbeat/vitals-writer.ts';
import { BundleService } from './bundles/service.ts';
import { ReleaseService } from './releases/service.ts';
import { ROLLOUT_PASS_MS, RolloutService } from './releases/rollouts.ts';
import { settleInterruptedRotation } from './pki/ca-rotation.ts';
import { CertificateService } from './pki/certificate-service.ts';
import { ensureTlsMaterial, type TlsMaterial } from './pki/certificates.ts';
import { PUBLIC_FILE_MODE, SECRET_FILE_MODE, writeFileAtomic } from './pki/files.ts';
import { ensureJwtSigningKey } from './pki/jwt-signing-key.ts';
import { DEV_RELEASE_PUBLIC_KEY, ensureBundleKey, ensureReleasePublicKey, RELEASE_PUBLIC_KEY_FILE, type ReleaseKeySource } from './pki/signing-keys.ts';
import { keyIdHex } from '../common/minisign.ts';
import { PeriodicPasses } from './lib/periodic-passes.ts';
import { CLI_CREDENTIAL_FILE, DATABASE_FILE, ENDPOINT_FILE } from './lib/data-dir-files.ts';
import { lockDataDir } from './lib/data-dir-lock.ts';
import { PresenceService } from './presence/service.ts';
import { EventLoopWatch } from './health/event-loop-watch.ts';
import { clusterHandlers } from './cluster/handlers.ts';
import { ClusterService, SWEEP_LOCKS } from './cluster/service.ts';
import { openPostgresStores, openStores } from './store/index.ts';
import { TaskService } from './tasks/service.ts';
import { HostService } from './hosts/service.ts';
import { InventoryService, QUIET_SCAN_PASS_MS } from './inventory/service.ts';

export { DATABASE_FILE };
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
  /** The file the release key was read from (absolute for the development key), undefined without one. */
  releaseKeyPath: string | undefined;
  firstAdmin: FirstAdmin | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** The SANs as configured now (the configuration read again), for `certs rotate-server`; the start's SANs without it. */
  sans?: () => readonly string[];
}

/** Bounds the grace given to open calls when the appliance stops. */
const GRPC_STOP_GRACE_MS = 5_000;

/**
 * Starts the appliance: data directory, database, keys, gRPC and HTTPS listeners. A failed start
 * (ERR_STORAGE_* when the volume is full or read-only, ERR_LISTEN_FAILED, …) releases what it had
 * opened — listeners, timers, the database — before it throws, so the process can exit.
 */
export async function startAppliance(config: ApplianceConfig, log: Logger, options: StartOptions = {}): Promise<RunningAppliance> {
  for (const warning of config.warnings) log.warn({ warning }, 'configuration warning');
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    chmodSync(config.dataDir, 0o700);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot create the data directory ${config.dataDir}`, { path: config.dataDir }, { cause });
  }
  const now = new Date();
  settleInterruptedRotation(config.dataDir, log, now);
  const tls = await ensureTlsMaterial(config.dataDir, config.sans, now);
  const jwtKey = await ensureJwtSigningKey(config.dataDir);
  const bundleKey = ensureBundleKey(config.dataDir);
  const release = ensureReleasePublicKey(config.dataDir, config.releasePublicKeyFile);
  if (release.removedDevelopmentCopy) log.info({ path: join(config.dataDir, RELEASE_PUBLIC_KEY_FILE) }, 'removed a copy of a development release key from the data directory: the development key is read in place at each bundle build');
  if (release.source === 'development') log.warn({ path: DEV_RELEASE_PUBLIC_KEY }, 'trusting the development release key from .dev-keys/: give a production appliance its release key');
  if (release.source === 'none') log.warn('no agent release public key: set release_public_key_file to build install bundles');
  // Held while serving: no stopped-mode bundle build or restore opens the database meanwhile (decision 108).
  const dataDirLock = lockDataDir(config.dataDir, 'serve');
  // What start-up opened, closed last-first if a later step fails.
  const opened: Array<() => unknown> = [() => dataDirLock.release()];
  try {
    const stores = config.database.kind === 'postgres' ? await openPostgresStores(config.database.url, { log, poolSize: config.databasePoolSize }) : openStores(join(config.dataDir, DATABASE_FILE), { log, checkpointThread: true });
    opened.push(() => stores.close());
    // A full or read-only volume fails the start instead of serving agents whose reports it would refuse.
    await stores.checkWritable();
    const org = await stores.organisations.ensureDefault(now.getTime());
    const firstAdmin = await createFirstAdmin(stores, now.getTime());
    if (firstAdmin) writeFileAtomic(join(config.dataDir, CLI_CREDENTIAL_FILE), `${firstAdmin.cliToken}\n`, SECRET_FILE_MODE);
    // A database that already had an admin was served before, with a CA that is not the one this start
    // made: the instance skipped provisioning. A warning, not a refusal: the only data directory lost needs a new CA too.
    if (tls.createdCa && !firstAdmin && config.database.kind === 'postgres') log.warn({ ca_fingerprint: tls.caFingerprint }, 'a new CA was made for a database served before: agents trusting the CA of its other instances will not trust this one; provision this data directory from a running instance (docs/operations.md, Adding an ingest instance)');

    const jwt = new AgentJwtAuthority(jwtKey, config.jwtTtlSecs);
    const cluster: ClusterService = new ClusterService({
      stores,
      log,
      listenUrl: config.database.kind === 'postgres' ? config.database.url : undefined,
      handlers: clusterHandlers(() => ({ presence: presenceService, tasks, inventory })),
    });
    // Never rejects: a failure is logged and the next stream's connected() requeues them.
    const presenceService: PresenceService = new PresenceService({ stores, log, cluster, requeueTasks: (hostIds) => void tasks.disconnected(hostIds) });
    const presence = presenceService.registry;
    const tasks: TaskService = new TaskService({ stores, presence, log, cluster, retentionMs: config.taskRetentionMs, onFinished: (tx, task) => hosts.taskFinished(tx, task) });
    const hosts: HostService = new HostService({ stores, presence: presenceService, tasks, log });
    const bundles = new BundleService({ stores, orgId: org.id, dataDir: config.dataDir, log });
    const releases: ReleaseService = new ReleaseService({ stores, dataDir: config.dataDir, log, retired: () => rollouts.refresh() });
    await releases.removeLeftStaging();
    // Agents fetch releases from the HTTPS server, which listens after the gRPC one: no offer before.
    let httpsPort = 0;
    const rollouts: RolloutService = new RolloutService({ stores, orgId: org.id, log, httpsPort: () => httpsPort, isHere: (release) => releases.isHere(release) });
    await rollouts.refresh();
    opened.push(() => rollouts.stop());
    const inventory: InventoryService = new InventoryService({ stores, presence, tasks, log });
    const vitals = new VitalsWriter(stores, log, config.vitalsRetentionMs);
    opened.push(() => vitals.close());
    await cluster.start();
    opened.push(() => cluster.stop());
    // Scans still receiving were cut off by the last stop, unless another instance may be receiving them now.
    if (await cluster.alone()) await inventory.abandonOpenScans(now.getTime());
    const audit = new AuditService({ stores, cluster, log: log.child({ area: 'audit' }), retentionDays: config.auditRetentionDays });
    const passes = new PeriodicPasses(log);
    opened.push(() => passes.stop(GRPC_STOP_GRACE_MS));
    passes.every(TASK_SWEEP_INTERVAL_MS, 'task sweep failed', () => tasks.sweep(), { runNow: true });
    passes.every(MAINTENANCE_INTERVAL_MS, 'register nonce prune failed', () => cluster.exclusively(SWEEP_LOCKS.registerNonces, () => stores.registerNonces.prune(Date.now()).then(() => undefined)));
    passes.every(MAINTENANCE_INTERVAL_MS, 'audit prune failed', () => audit.prune(Date.now()));
    passes.every(MAINTENANCE_INTERVAL_MS, 'task prune failed', () => tasks.prune(Date.now()));
    passes.every(MAINTENANCE_INTERVAL_MS, 'deleted hosts inventory purge failed', (signal) => inventory.purgeDeletedHosts(Date.now(), signal));
    passes.every(config.inventorySweepSecs * 1000, 'software sweeper failed', (signal) => inventory.sweep(Date.now(), signal));
    // Every instance runs it: each scan moves once (a conditional UPDATE), and the read is of the open scans alone.
    passes.every(QUIET_SCAN_PASS_MS, 'quiet scan pass failed', () => inventory.abandonQuietScans(Date.now()));
    // Every instance runs it: it reloads the offers each instance answers from; a group starts once (a conditional update).
    passes.every(ROLLOUT_PASS_MS, 'rollout pass failed', () => rollouts.advance(Date.now()));
    const challenges = new RegisterChallenges(jwtKey.privateKey);
    const enrolment = new EnrolmentService({ stores, jwt, challenges, orgId: org.id, pendingPollSecs: config.pendingPollSecs, log });
    const accounts = new AdminAccountService({ store: stores.adminCredentials, throttle: new LoginThrottle(), log: log.child({ area: 'admin-login' }), dataDir: config.dataDir });
    const services = { accounts, enrolment, hosts, presence: presenceService, tasks, bundles, inventory, cluster, releases, rollouts, audit };
    const certs = new CertificateService({ dataDir: config.dataDir, sans: options.sans ?? (() => config.sans), stores, presence, cluster, log }, tls);
    const loopWatch = new EventLoopWatch(log).start();
    opened.push(() => loopWatch.stop());
    const deps = { stores, jwt, challenges, presence, vitals, services, log, orgId: org.id, dataDir: config.dataDir, jwtKey, certs, loopWatch, downloadLimits: config.agentDownloads };

    const grpc = await startGrpcServer(config.listen, config.grpcPort, tls, deps);
    opened.push(() => grpc.stop(0));
    // Loaded once agents can connect: the admin API and console (fastify, its plugins and every route's
    // schema compiled) take a third of a start's CPU, which a restart should not spend before the
    // agents' port listens (issue 14: listening within 0.5 s of CPU, before an agent's first retry).
    const { startHttpServer } = await import('./http/server.ts');
    const http = await startHttpServer(config.listen, config.httpPort, tls, deps);
    httpsPort = http.port;
    opened.push(() => http.stop());
    certs.serveWith([grpc, http]);
    const apiHost = config.listen === '0.0.0.0' || config.listen === '::' ? '127.0.0.1' : config.listen;
    writeFileAtomic(
      join(config.dataDir, ENDPOINT_FILE),
      `${JSON.stringify({ admin_api: `https://${apiHost.includes(':') ? `[${apiHost}]` : apiHost}:${http.port}`, grpc_port: grpc.port, pid: process.pid }, null, 2)}\n`,
      PUBLIC_FILE_MODE,
    );
    log.info({ version: PRODUCT_VERSION, data_dir: config.dataDir, database: config.database.kind === 'postgres' ? config.database.display : 'sqlite', listen: config.listen, grpc_port: grpc.port, http_port: http.port, ca_fingerprint: tls.caFingerprint, bundle_key_id: keyIdHex(bundleKey.keyId), release_key_id: release.key && keyIdHex(release.key.keyId), jwt_kid: jwtKey.kid, sans: config.sans, sans_unicode: config.sans.map(unicodeHostName) }, 'appliance started');

    return {
      grpcPort: grpc.port,
      httpPort: http.port,
      tls,
      bundleKeyId: keyIdHex(bundleKey.keyId),
      releaseKeyId: release.key && keyIdHex(release.key.keyId),
      releaseKeySource: release.source,
      releaseKeyPath: release.source === 'development' ? DEV_RELEASE_PUBLIC_KEY : release.key && join(config.dataDir, RELEASE_PUBLIC_KEY_FILE),
      firstAdmin,
      stop: async () => {
        // Begun first (no new pass starts, the running ones are asked to end); awaited before the stores close.
        const passesEnded = passes.stop(GRPC_STOP_GRACE_MS);
        loopWatch.stop();
        presence.closeAll(stoppingError);
        // Settled, not all: a listener that fails to close must not keep the vitals unflushed or the database open.
        const closed = await Promise.allSettled([grpc.stop(GRPC_STOP_GRACE_MS), http.stop()]);
        for (const outcome of closed) if (outcome.status === 'rejected') log.error({ err: outcome.reason }, 'a listener did not close cleanly');
        // Last: the streams are closed, so no heartbeat arrives after the final flush.
        await vitals.close();
        // Each closed stream's offline bookkeeping (its row released, last_disconnected_at) before the lease goes.
        await presenceService.offlineSettled(GRPC_STOP_GRACE_MS);
        await passesEnded;
        await cluster.stop();
        await stores.close();
        dataDirLock.release();
        log.info('appliance stopped');
      },
    };
  } catch (error) {
    // Every opened part is closed even when one of them fails to; the start's own error is what is thrown.
    for (const close of opened.reverse()) {
      try {
        await close();
      } catch (closeError) {
        log.error({ err: closeError }, 'a part opened by the failed start did not close cleanly');
      }
    }
    throw error;
  }
}
