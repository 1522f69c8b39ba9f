import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { checkAgentText } from '../../common/agent-text.ts';
import { CtOpsError } from '../../common/errors.ts';
import { REPORT_ONLY_METADATA, type HeartbeatRequest__Output, type HeartbeatResponse } from '../../common/proto.ts';
import type { AgentJwtAuthority } from '../auth/agent-jwt.ts';
import type { VitalsWriter } from '../heartbeat/vitals-writer.ts';
import type { LiveSession, PresenceRegistry } from '../presence/registry.ts';
import type { Stores } from '../store/index.ts';
import type { TaskDispatcher } from '../tasks/dispatcher.ts';
import { describeHost, mayStream } from '../hosts/status.ts';
import { authenticateCall } from './bearer.ts';
import { toServiceError } from './status.ts';

type HeartbeatCall = grpc.ServerDuplexStream<HeartbeatRequest__Output, HeartbeatResponse>;

export interface HeartbeatDeps {
  stores: Stores;
  jwt: AgentJwtAuthority;
  presence: PresenceRegistry;
  vitals: VitalsWriter;
  tasks: TaskDispatcher;
  log: Logger;
}

const DEFAULT_INTERVAL_SECS = 30;
const REPORT_STREAM_MAX_MS = 60_000;

/** A heartbeat that passed validation. */
interface Heartbeat {
  sequence: number;
  intervalSecs: number;
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  uptimeSeconds: number;
  timestampUnix: number;
  agentVersion: string;
}

function parseHeartbeat(message: HeartbeatRequest__Output, agentId: string): Heartbeat {
  if (message.agent_id !== agentId) {
    throw new CtOpsError('ERR_AGENT_MISMATCH', 'HeartbeatRequest.agent_id is not the agent of this JWT', { agent_id: message.agent_id.slice(0, 64) });
  }
  const percent = (value: number, field: string): number => {
    if (!Number.isFinite(value) || value < 0 || value > 100) throw new CtOpsError('ERR_INVALID_ARGUMENT', `HeartbeatRequest.${field} must be 0-100`, { field });
    return value;
  };
  if (message.interval_secs < 5 || message.interval_secs > 3600) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', 'HeartbeatRequest.interval_secs must be 5-3600', { field: 'interval_secs' });
  }
  if (!Number.isSafeInteger(message.uptime_seconds) || message.uptime_seconds < 0) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', 'HeartbeatRequest.uptime_seconds must be a non-negative integer', { field: 'uptime_seconds' });
  }
  checkAgentText(message.agent_version, 'HeartbeatRequest.agent_version', { max: 64 }, { field: 'agent_version' });
  return {
    sequence: message.sequence,
    intervalSecs: message.interval_secs,
    cpuPercent: percent(message.cpu_percent, 'cpu_percent'),
    memoryPercent: percent(message.memory_percent, 'memory_percent'),
    diskPercent: percent(message.disk_percent, 'disk_percent'),
    uptimeSeconds: message.uptime_seconds,
    timestampUnix: message.timestamp_unix,
    agentVersion: message.agent_version,
  };
}

/**
 * The Heartbeat stream: authenticated once at open by the JWT in metadata; every heartbeat is
 * validated, queued for a batched write, and acknowledged by sequence once the task reports it
 * carries are committed (never when the storage refused them). Queued tasks go out as soon as
 * the stream opens.
 * A fresh JWT is pushed when the current one is within a third of its lifetime of expiry.
 */
export function heartbeatHandler(deps: HeartbeatDeps): grpc.handleBidiStreamingCall<HeartbeatRequest__Output, HeartbeatResponse> {
  return (call: HeartbeatCall) => {
    openStream(call, deps).catch((error: unknown) => {
      deps.log.warn({ err: error, peer: call.getPeer() }, 'heartbeat stream refused');
      call.emit('error', toServiceError(error));
    });
  };
}

async function openStream(call: HeartbeatCall, deps: HeartbeatDeps): Promise<void> {
  const { stores, jwt, presence, vitals, tasks, log } = deps;
  const credential = await authenticateCall(call.metadata, jwt, Date.now());
  const agentId = credential.agentId;
  const host = stores.hosts.get(agentId);
  if (!host || !mayStream(host)) {
    throw new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the host is ${describeHost(host)}; only active hosts may stream`, { host_id: agentId });
  }
  if (call.cancelled) return;
  let credentialExpiresAt = credential.expiresAt;
  let refreshing = false;
  let ended = false;
  const session: LiveSession = {
    agentId,
    send: (message) => !ended && call.write(message) !== undefined,
    close: (error) => {
      if (ended) return;
      ended = true;
      // The status goes out after the message being handled is answered: a report that ends the
      // stream (a successful uninstall deletes the host) is still acknowledged first.
      queueMicrotask(() => (error ? call.emit('error', toServiceError(error)) : call.end()));
    },
  };
  // A report-only stream (the uninstaller's report-task) carries reports and nothing else: it must
  // not replace the agent's own stream, take its tasks, or record vitals of a machine being emptied.
  const reportOnly = call.metadata.get(REPORT_ONLY_METADATA)[0] === '1';
  let reportDeadline: NodeJS.Timeout | undefined;
  if (reportOnly) {
    log.info({ host_id: agentId, peer: call.getPeer() }, 'report stream opened');
    // No presence deadline watches it: a reporter has a minute to say what it came to say.
    reportDeadline = setTimeout(() => session.close(), REPORT_STREAM_MAX_MS);
  } else {
    presence.attach(session, host.heartbeatIntervalSecs ?? DEFAULT_INTERVAL_SECS);
    log.info({ host_id: agentId, peer: call.getPeer() }, 'heartbeat stream opened');
    tasks.connected(agentId);
  }

  const refreshCredential = async (nowMs: number): Promise<void> => {
    refreshing = true;
    try {
      const issued = await jwt.issue(agentId, nowMs);
      if (session.send({ credential: { jwt: issued.jwt, jwt_expires_unix: issued.expiresAt } })) {
        credentialExpiresAt = issued.expiresAt;
        log.info({ host_id: agentId, expires_at: issued.expiresAt }, 'credential refreshed');
      }
    } finally {
      refreshing = false;
    }
  };

  call.on('data', (message: HeartbeatRequest__Output) => {
    if (ended) return;
    const receivedAt = Date.now();
    let heartbeat: Heartbeat;
    try {
      heartbeat = parseHeartbeat(message, agentId);
    } catch (error) {
      log.warn({ err: error, host_id: agentId }, 'heartbeat rejected');
      presence.detach(session, 'stream-closed');
      session.close(error as CtOpsError);
      return;
    }
    presence.heard(session, heartbeat.intervalSecs);
    if (!reportOnly) vitals.add({
      hostId: agentId,
      receivedAt,
      agentTimestamp: heartbeat.timestampUnix,
      intervalSecs: heartbeat.intervalSecs,
      agentVersion: heartbeat.agentVersion,
      cpuPercent: heartbeat.cpuPercent,
      memoryPercent: heartbeat.memoryPercent,
      diskPercent: heartbeat.diskPercent,
      uptimeSeconds: heartbeat.uptimeSeconds,
    });
    // An ack means stored: the reports are committed before it, and a heartbeat whose reports the
    // storage refused is not acknowledged. The stream ends instead (UNAVAILABLE, ERR_STORAGE_*), so
    // the agent keeps them queued and sends them again on its next stream.
    const notStored = message.task_updates.length > 0 ? tasks.report(agentId, message.task_updates) : undefined;
    if (notStored) {
      presence.detach(session, 'stream-closed');
      session.close(notStored);
      return;
    }
    // Written directly: a report may have just closed this session (see close), and its ack still goes out.
    call.write({ ack: { sequence: heartbeat.sequence, received_unix_ms: receivedAt } });
    if (!reportOnly && !refreshing && credentialExpiresAt * 1000 - receivedAt < (jwt.ttlSecs * 1000) / 3) {
      refreshCredential(receivedAt).catch((error: unknown) => log.error({ err: error, host_id: agentId }, 'credential refresh failed'));
    }
  });
  const finish = (): void => {
    clearTimeout(reportDeadline);
    if (!ended) {
      ended = true;
      call.end();
    }
    presence.detach(session, 'stream-closed');
  };
  call.on('end', finish);
  call.on('cancelled', finish);
  call.on('error', () => presence.detach(session, 'stream-closed'));
}
