import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { CtOpsError, GrpcCode, type ErrorCode } from '../../common/errors.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import type { AgentConfig } from '../config/types.ts';
import { HeartbeatSession } from '../heartbeat/session.ts';
import { TaskUpdateQueue, type TaskUpdate } from '../heartbeat/task-updates.ts';
import { machineFingerprint } from '../identity/fingerprint.ts';
import { loadIdentity, type AgentIdentity } from '../identity/load.ts';
import { identityPaths } from '../identity/paths.ts';
import type { AgentCredential } from '../identity/state.ts';
import type { AgentLogger } from '../log/logger.ts';
import { machineIdSourceFor } from '../platform/machine-id/index.ts';
import { attemptRegistration } from '../registration/attempt.ts';
import { describeHost } from '../registration/host.ts';
import { TaskLedger } from '../tasks/ledger.ts';
import { reportOf } from '../tasks/runner.ts';
import { IngestAddresses } from '../transport/addresses.ts';
import { createGrpcTransport } from '../transport/grpc-transport.ts';
import { AgentTrust } from '../identity/trust.ts';
import { certificateTimeError, isCertificateTimeFailure, isTlsTrustFailure, untrustedError, type IngestEndpoint } from '../transport/failure.ts';
import type { IngestTransport, RpcFailure } from '../transport/types.ts';
import { createVitalsSampler } from '../vitals/sample.ts';
import { loadConfigLogged } from './startup.ts';

/** What `report-task` sends: the final outcome of a task this agent handed off. */
export interface TaskReport {
  readonly taskId: string;
  readonly outcome: 'succeeded' | 'failed';
  /** Only with 'failed'; the appliance records ERR_TASK_FAILED when absent. */
  readonly errorCode: ErrorCode | undefined;
  readonly message: string;
}

/** The report must be acknowledged within this time at one ingest address, Register included. */
export const REPORT_TIMEOUT_MS = 20_000;

/** A report that failed so at one ingest address is tried at the next (the failure is that address's connection or certificate). */
const ADDRESS_FAILURES: ReadonlySet<ErrorCode> = new Set(['ERR_INGEST_UNREACHABLE', 'ERR_INGEST_TLS_UNTRUSTED', 'ERR_INGEST_TLS_CLOCK']);

type Delivery = { readonly delivered: true } | { readonly delivered: false; readonly failure: RpcFailure | undefined };

/**
 * `report-task`: tells the appliance how a handed-off task ended, from a process other than the
 * agent (the uninstaller runs it with copies of the config, CA and data_dir after it removed the
 * agent). Only a task this agent received (one in its ledger) can be reported. Uses the saved
 * JWT until the appliance refuses it (never judged by this host's clock), else Registers by key
 * (never with the enrolment token: a reporter must not enrol a new host), sends one heartbeat
 * carrying the report and returns once the appliance acknowledged it. Writes nothing into data_dir.
 * With several ingest addresses, one the report cannot reach (ADDRESS_FAILURES) passes it to the
 * next, in order; the last one's error is thrown.
 */
export async function reportTask(configFile: string, report: TaskReport, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<string> {
  const { config } = loadConfigLogged(configFile, env, log);
  // loadIdentity would create a key: a reporter without one has nothing to report as.
  if (!existsSync(identityPaths(config.dataDir).privateKey)) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `no agent identity (agent_key.pem) in ${config.dataDir}`, { path: config.dataDir });
  }
  const identity = loadIdentity(config.dataDir, log);
  const received = TaskLedger.open(config.dataDir, log).get(report.taskId);
  if (received === undefined) {
    throw new CtOpsError('ERR_TASK_NOT_FOUND', `this agent never received task ${report.taskId} (it is not in the task ledger of ${config.dataDir})`, { task_id: report.taskId });
  }
  const update = reportOf({ ...received, phase: report.outcome, errorCode: report.outcome === 'failed' ? report.errorCode : undefined, message: report.message, resultJson: undefined });
  const trust = AgentTrust.load(config.dataDir, config.ingest.caPem, log);
  const addresses = new IngestAddresses(config.ingest.addresses);
  const transport = createGrpcTransport(addresses, () => trust.caPem);
  try {
    for (;;) {
      const endpoint = { address: addresses.current, caCertFile: config.ingest.caCertFile };
      try {
        await reportVia(transport, endpoint, identity, update, config, env, log);
        break;
      } catch (error) {
        const lastAddress = addresses.currentIndex === addresses.all.length - 1;
        if (!(error instanceof CtOpsError) || !ADDRESS_FAILURES.has(error.code) || lastAddress) throw error;
        log.warn({ ...addresses.fields(), error_code: error.code, error: error.message }, 'task report not delivered at this ingest address; trying the next');
        addresses.advance();
      }
    }
  } finally {
    transport.close();
  }
  log.info({ ...addresses.fields(), task_id: report.taskId, outcome: report.outcome, error_code: update.error_code || null }, 'task report delivered');
  return `reported task ${report.taskId} ${report.outcome} to ${addresses.current.target}`;
}

/** The report at one ingest address (the transport's current one); throws why it was not delivered. */
async function reportVia(transport: IngestTransport, endpoint: IngestEndpoint, identity: AgentIdentity, update: TaskUpdate, config: AgentConfig, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<void> {
  // Monotonic (performance.now()): a clock set by NTP during the report must not change its timeout.
  const deadline = performance.now() + REPORT_TIMEOUT_MS;
  const saved = identity.credential;
  // The saved JWT is tried whatever the host clock says of it: the appliance judges it, and a refusal leads to Register.
  let delivery = await deliver(transport, saved ?? await registerByKey(transport, endpoint, config, identity, env, log), update, config, log, deadline);
  // A refused stream (JWT no longer accepted, host changed): Register tells why, or issues a fresh JWT.
  if (!delivery.delivered && saved !== undefined && isRefusal(delivery.failure)) {
    log.info({ code: delivery.failure?.grpcCode ?? null, details: delivery.failure?.details ?? null }, 'saved credential refused; registering by key');
    delivery = await deliver(transport, await registerByKey(transport, endpoint, config, identity, env, log), update, config, log, deadline);
  }
  if (!delivery.delivered) throw undeliveredError(delivery.failure, endpoint);
}

async function registerByKey(transport: IngestTransport, endpoint: IngestEndpoint, config: AgentConfig, identity: AgentIdentity, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<AgentCredential> {
  const host = describeHost(config, machineFingerprint(machineIdSourceFor(process.platform), env, log));
  const outcome = await attemptRegistration(
    {
      transport,
      keys: identity.keys,
      host,
      orgToken: '',
      address: endpoint.address,
      log,
      now: Date.now,
      nonce: () => new Uint8Array(randomBytes(16)),
      tlsError: (reason) => untrustedError(endpoint, reason),
    },
    true,
  );
  switch (outcome.kind) {
    case 'active':
      return { agentId: outcome.agentId, jwt: outcome.jwt, jwtExpiresUnix: outcome.jwtExpiresUnix };
    case 'pending':
      throw new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the appliance holds this host ${outcome.status}; it cannot report tasks`, { agent_id: outcome.agentId });
    case 'refused':
      throw new CtOpsError('ERR_AGENT_REVOKED', `the appliance ${outcome.status} this host; it cannot report tasks`, { agent_id: outcome.agentId });
    case 'retry':
      throw new CtOpsError(outcome.failure.errorCode ?? 'ERR_INGEST_UNREACHABLE', `Register failed: ${outcome.failure.details}`, { grpc_code: outcome.failure.grpcCode, address: endpoint.address.target });
    case 'fatal':
      throw outcome.error;
  }
}

/** One Heartbeat stream whose first heartbeat carries the report; done when that heartbeat is acknowledged. */
function deliver(transport: IngestTransport, credential: AgentCredential, update: TaskUpdate, config: AgentConfig, log: AgentLogger, deadline: number): Promise<Delivery> {
  return new Promise((resolve) => {
    const updates = new TaskUpdateQueue();
    updates.add(update);
    let session: HeartbeatSession | undefined;
    let settled = false;
    const finish = (delivery: Delivery): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session?.close();
      resolve(delivery);
    };
    const timer = setTimeout(() => finish({ delivered: false, failure: undefined }), Math.max(0, deadline - performance.now()));
    session = new HeartbeatSession({
      transport,
      credential,
      intervalSecs: config.heartbeatIntervalSecs,
      agentVersion: PRODUCT_VERSION,
      vitals: createVitalsSampler(config.dataDir),
      updates,
      now: Date.now,
      log,
      reportOnly: true,
      events: {
        onFirstAck: () => undefined,
        onCredential: () => undefined,
        // A report-only stream gets no tasks; one arriving anyway is not run here.
        onTask: (task) => log.debug({ task_id: task.task_id }, 'task pushed to the reporter; not run'),
        onCancel: () => undefined,
        onKeyRotation: () => undefined,
        // A report stream is sent none; the agent's own stream takes it.
        onTrustBundle: () => undefined,
        onDelivered: (reports) => {
          if (reports.some((report) => report.task_id === update.task_id)) finish({ delivered: true });
        },
        onEnd: (end) => finish({ delivered: false, failure: end.status }),
      },
    });
  });
}

function isRefusal(failure: RpcFailure | undefined): boolean {
  return failure?.grpcCode === GrpcCode.UNAUTHENTICATED || failure?.grpcCode === GrpcCode.PERMISSION_DENIED;
}

function undeliveredError(failure: RpcFailure | undefined, endpoint: IngestEndpoint): CtOpsError {
  const address = endpoint.address.target;
  if (failure === undefined) return new CtOpsError('ERR_INGEST_UNREACHABLE', `no acknowledgement from ${address} within ${REPORT_TIMEOUT_MS / 1000} s`, { address });
  if (isTlsTrustFailure(failure)) return untrustedError(endpoint, failure.details);
  if (failure.errorCode === undefined && isCertificateTimeFailure(failure.details)) return certificateTimeError(endpoint, failure.details);
  return new CtOpsError(failure.errorCode ?? 'ERR_INGEST_UNREACHABLE', `the heartbeat stream to ${address} ended before the report was acknowledged: ${failure.details}`, { grpc_code: failure.grpcCode, address });
}
