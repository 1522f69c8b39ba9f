import type * as grpc from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { checkAgentText } from '../../common/agent-text.ts';
import { plausibleClockOffsetMs } from '../../common/clock-offset.ts';
import { CtOpsError } from '../../common/errors.ts';
import { MAX_TASK_UPDATES_PER_HEARTBEAT } from '../../common/heartbeat-limits.ts';
import { REPORT_ONLY_METADATA, type HeartbeatRequest__Output, type HeartbeatResponse, type TaskUpdate__Output } from '../../common/proto.ts';
import type { AgentJwtAuthority } from '../auth/agent-jwt.ts';
import type { VitalsWriter } from '../heartbeat/vitals-writer.ts';
import type { LiveSession, PresenceRegistry } from '../presence/registry.ts';
import type { Effect, Stores } from '../store/index.ts';
import { runEffects as runEffectsOf } from '../store/unit-of-work.ts';
import type { TaskService } from '../tasks/service.ts';
import { failureFields, isStorageFailure } from '../health/storage-health.ts';
import { HostClockWatch } from '../hosts/clock-offset.ts';
import { describeHost, mayStream } from '../hosts/status.ts';
import { parseHostFacts, type HostFacts } from '../hosts/facts.ts';
import { offerKeyRotation } from '../enrolment/key-rotation.ts';
import { claimIdentity, credentialRefusal, refreshFacts } from '../hosts/identity.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { CertificateService } from '../pki/certificate-service.ts';
import { authenticateCall } from './bearer.ts';
import type { IngestGuards } from './guards.ts';
import { toServiceError } from './status.ts';

type HeartbeatCall = grpc.ServerDuplexStream<HeartbeatRequest__Output, HeartbeatResponse>;

export interface HeartbeatDeps {
  stores: Stores;
  jwt: AgentJwtAuthority;
  presence: PresenceRegistry;
  vitals: VitalsWriter;
  services: { readonly tasks: TaskService };
  certs: CertificateService;
  log: Logger;
}

const DEFAULT_INTERVAL_SECS = 30;
const REPORT_STREAM_MAX_MS = 60_000;
/** The longest a second stream of a host may stay silent before its first heartbeat (ms); agents send it at once. */
const FIRST_HEARTBEAT_MAX_MS = 10_000;
/** How long a stream opened over the host's rate limit is held before it is refused. */
const RATE_LIMITED_OPEN_DELAY_MS = 1_000;

/** A heartbeat that passed validation. */
interface Heartbeat {
  sequence: number;
  intervalSecs: number;
  cpuPercent: number;
  memoryPercent: number;
  diskPercent: number;
  uptimeSeconds: number;
  timestampUnix: number;
  /** The agent's clock when it sent the heartbeat (ms since the epoch); undefined when it sent none. */
  agentClockMs: number | undefined;
  agentVersion: string;
  /** Set on a stream's first heartbeat and when a fact changed (agents before 0.2 never send it). */
  facts: HostFacts | undefined;
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
  for (const field of ['timestamp_unix', 'timestamp_unix_ms', 'trust_generation'] as const) {
    if (!Number.isSafeInteger(message[field]) || message[field] < 0) {
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `HeartbeatRequest.${field} must be a non-negative integer`, { field });
    }
  }
  if (message.trust_digest.length !== 0 && message.trust_digest.length !== 32) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', 'HeartbeatRequest.trust_digest must be empty or a 32-byte SHA-256', { field: 'trust_digest' });
  }
  checkAgentText(message.agent_version, 'HeartbeatRequest.agent_version', { max: 64 }, { field: 'agent_version' });
  if (message.task_updates.length > MAX_TASK_UPDATES_PER_HEARTBEAT) {
    // Refused whole rather than cut: an ack must not cover reports that were never applied.
    throw new CtOpsError('ERR_INVALID_ARGUMENT', `a heartbeat carries at most ${MAX_TASK_UPDATES_PER_HEARTBEAT} task reports, not ${message.task_updates.length}`, { field: 'task_updates', count: message.task_updates.length });
  }
  return {
    sequence: message.sequence,
    intervalSecs: message.interval_secs,
    cpuPercent: percent(message.cpu_percent, 'cpu_percent'),
    memoryPercent: percent(message.memory_percent, 'memory_percent'),
    diskPercent: percent(message.disk_percent, 'disk_percent'),
    uptimeSeconds: message.uptime_seconds,
    timestampUnix: message.timestamp_unix,
    // Agents before timestamp_unix_ms send whole seconds only: good enough to see a clock off by minutes.
    agentClockMs: message.timestamp_unix_ms > 0 ? message.timestamp_unix_ms : message.timestamp_unix > 0 ? message.timestamp_unix * 1000 : undefined,
    agentVersion: message.agent_version,
    facts: message.host_facts ? parseHostFacts(message.host_facts) : undefined,
  };
}

/**
 * The Heartbeat stream: authenticated once at open by the JWT in metadata; every heartbeat is
 * validated, queued for a batched write (at most one sample per interval is stored), and
 * acknowledged by sequence once the task reports it carries are screened and committed (never when
 * the storage refused them). Queued tasks go out with the first heartbeat, once the machine behind the
 * stream (its HostFacts) may hold the host's identity (hosts/identity.ts).
 * A fresh JWT is pushed when the current one is within a third of its lifetime of expiry.
 *
 * Bounded per peer: the host's messages and stream opens share one rate limit, and a host has at
 * most HEARTBEAT_OPEN_CALLS_PER_HOST calls open (beyond either the stream ends with
 * ERR_STREAM_RATE_LIMITED); a peer that does not read what we write is not read
 * either until it does (backpressure); refusals are logged aggregated (RefusalLog).
 */
export function heartbeatHandler(deps: HeartbeatDeps & IngestGuards): grpc.handleBidiStreamingCall<HeartbeatRequest__Output, HeartbeatResponse> {
  return (call: HeartbeatCall) => {
    openStream(call, deps).catch((error: unknown) => {
      deps.refusals.refused({ peer: peerSource(call.getPeer()) }, error, 'heartbeat stream');
      call.emit('error', toServiceError(error));
    });
  };
}

/**
 * Counts the call among its host's open calls until it ends, and spends a point of the host's
 * message rate. Throws ERR_STREAM_RATE_LIMITED when the host has HEARTBEAT_OPEN_CALLS_PER_HOST
 * calls open or no point left, after RATE_LIMITED_OPEN_DELAY_MS.
 */
async function admitOpen(call: HeartbeatCall, agentId: string, { heartbeatRate, openHeartbeatCalls }: IngestGuards): Promise<void> {
  try {
    // grpc-js emits 'cancelled' once however the call ends: its status sent, reset by the peer, or
    // its connection gone; so a dead connection's calls stop counting and the agent can reconnect.
    call.once('cancelled', openHeartbeatCalls.open(agentId));
    await heartbeatRate.take(agentId);
  } catch (error) {
    // Held before the refusal: a peer reopening in a loop gets at most 16 streams (one connection's
    // limit) refused per delay, instead of costing a stream set-up each time it asks.
    await sleep(RATE_LIMITED_OPEN_DELAY_MS);
    throw error;
  }
}

async function openStream(call: HeartbeatCall, deps: HeartbeatDeps & IngestGuards): Promise<void> {
  const { stores, jwt, presence, vitals, log, refusals, heartbeatRate } = deps;
  const { tasks } = deps.services;
  const credential = await authenticateCall(call.metadata, jwt, Date.now());
  const agentId = credential.agentId;
  if (call.cancelled) return;
  await admitOpen(call, agentId, deps);
  const host = await stores.hosts.get(agentId);
  if (!host || !mayStream(host)) {
    throw new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the host is ${describeHost(host)}; only active hosts may stream`, { host_id: agentId });
  }
  const stale = credentialRefusal(host, credential.issuedAt);
  if (stale) throw stale;
  if (call.cancelled) return;
  // A report-only stream (the uninstaller's report-task) carries reports and nothing else: it must
  // not replace the agent's own stream, take its tasks, or record vitals of a machine being emptied.
  const reportOnly = call.metadata.get(REPORT_ONLY_METADATA)[0] === '1';
  let credentialExpiresAt = credential.expiresAt;
  const clock = new HostClockWatch(agentId, host.clockOffsetMs, log);
  // The trust bundle goes out once the stream's claim is judged, like any message (session.send).
  const trust = deps.certs.watchTrust(agentId, (message) => session.send(message));
  let refreshing = false;
  let ended = false;
  /** A write found the stream's buffer full: nothing more is sent, nor read, until it drains. */
  let congested = false;
  /** A message waits for the rate limit: nothing more is read until it is handled. */
  let waitingForRate = false;
  /**
   * The stream's first heartbeat was handled and its claim judged (claimIdentityOnce): until then
   * nothing is sent on it, so a task cannot reach a machine that may yet be refused.
   */
  let judged = false;
  /**
   * Every write to the peer goes through here: when the buffer is full (the peer does not read),
   * stop reading its messages until it drains, so what it sends cannot pile up replies here.
   */
  const writeToPeer = (message: HeartbeatResponse): void => {
    if (call.write(message) || congested) return;
    congested = true;
    call.pause();
    call.once('drain', () => {
      congested = false;
      if (ended) return;
      if (!waitingForRate) call.resume();
      // Never rejects: a failure is logged and the tasks stay queued.
      if (!reportOnly) void tasks.dispatch(agentId);
    });
  };
  /** After a write filled the buffer: true once it drains (the write was accepted), false when the call ends first. */
  const accepted = (): Promise<boolean> =>
    new Promise((resolve) => {
      const settle = (outcome: boolean) => () => {
        call.off('drain', drained);
        call.off('close', gone);
        call.off('cancelled', gone);
        resolve(outcome);
      };
      const drained = settle(true);
      const gone = settle(false);
      call.once('drain', drained);
      call.once('close', gone);
      call.once('cancelled', gone);
    });
  const session: LiveSession = {
    agentId,
    // False when not sent (the stream ended, its peer is not reading, or its claim is not judged yet): a task stays queued.
    send: (message) => {
      if (ended || congested || !judged) return false;
      writeToPeer(message);
      return true;
    },
    deliver: async (message) => {
      if (ended || congested || !judged) return false;
      writeToPeer(message);
      return !congested || accepted();
    },
    close: (error) => {
      if (ended) return;
      ended = true;
      // Read nothing more: a peer that keeps writing is held back by flow control, not discarded at line rate.
      call.pause();
      // The status goes out after the message being handled is answered: a report that ends the
      // stream (a successful uninstall deletes the host) is still acknowledged first.
      queueMicrotask(() => (error ? call.emit('error', toServiceError(error)) : call.end()));
    },
  };
  /** Ends the stream with a refusal of what the peer sent. */
  const refuse = (error: unknown, what: string): void => {
    // A storage failure is ours, not the peer's: logged as such; the stream ends UNAVAILABLE unacknowledged.
    if (isStorageFailure(error)) log.error({ host_id: agentId, ...failureFields(error) }, 'heartbeat not stored');
    else refusals.refused({ host_id: agentId }, error, what);
    presence.detach(session, 'stream-closed');
    session.close(error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error }));
  };
  let reportDeadline: NodeJS.Timeout | undefined;
  let firstHeartbeatDeadline: NodeJS.Timeout | undefined;
  let attached = false;
  const attach = (intervalSecs: number): void => {
    attached = true;
    clearTimeout(firstHeartbeatDeadline);
    presence.attach(session, intervalSecs);
    log.info({ host_id: agentId, peer: call.getPeer() }, 'heartbeat stream opened');
  };
  let knownHost = host;
  if (reportOnly) {
    log.info({ host_id: agentId, peer: call.getPeer() }, 'report stream opened');
    // No presence deadline watches it: a reporter has a minute to say what it came to say.
    reportDeadline = setTimeout(() => session.close(), REPORT_STREAM_MAX_MS);
  } else if (!presence.isStreaming(agentId)) {
    attach(host.heartbeatIntervalSecs ?? DEFAULT_INTERVAL_SECS);
  } else {
    // Another stream holds the host: this one replaces it only once its first heartbeat said which
    // machine it is (claimIdentity), so a second machine cannot displace the first unseen.
    // Bounded apart from the interval: a silent stream holds one of the host's few open calls
    // (HEARTBEAT_OPEN_CALLS_PER_HOST), and an hour's interval must not let two of them lock the host out.
    firstHeartbeatDeadline = setTimeout(() => session.close(), Math.min(2 * (host.heartbeatIntervalSecs ?? DEFAULT_INTERVAL_SECS) * 1000, FIRST_HEARTBEAT_MAX_MS));
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

  // The rate limit answers asynchronously: the stream is paused while a message waits for it, so
  // messages are handled one at a time, in the order they came.
  call.on('data', (message: HeartbeatRequest__Output) => {
    if (ended) return;
    call.pause();
    waitingForRate = true;
    // A rate refusal, or a failure of ours while handling, ends the stream through the refusal log.
    heartbeatRate
      .take(agentId)
      .then(() => handle(message))
      .catch((error: unknown) => refuse(error, 'heartbeat'))
      .finally(() => {
        waitingForRate = false;
        if (!ended && !congested) call.resume();
      })
      .catch((error: unknown) => log.error({ err: error, host_id: agentId }, 'heartbeat handling failed'));
  });
  const runEffects = (effects: readonly Effect[]): Promise<void> =>
    runEffectsOf(effects, (error) => log.error({ err: error, host_id: agentId }, 'an effect after commit failed'));
  /** One heartbeat within the rate: validated, its vitals queued, its reports applied, then acknowledged. */
  const handle = async (message: HeartbeatRequest__Output): Promise<void> => {
    if (ended) return;
    const receivedAt = Date.now();
    let heartbeat: Heartbeat;
    try {
      heartbeat = parseHeartbeat(message, agentId);
    } catch (error) {
      return refuse(error, 'heartbeat');
    }
    if (!reportOnly && !(await claimIdentityOnce(heartbeat, receivedAt))) return;
    presence.heard(session, heartbeat.intervalSecs);
    const clockOffsetMs = heartbeat.agentClockMs === undefined ? null : plausibleClockOffsetMs(heartbeat.agentClockMs - receivedAt);
    if (!reportOnly && clockOffsetMs !== null) clock.observe(clockOffsetMs);
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
      clockOffsetMs,
    });
    const reports: TaskUpdate__Output[] = [];
    for (const update of message.task_updates) {
      try {
        await tasks.screenReport(agentId, update);
        reports.push(update);
      } catch (error) {
        // A report that could not be read (storage failing) is not the peer's fault and must not be
        // acknowledged as if refused: the heartbeat ends unacknowledged and the agent sends it again.
        if (isStorageFailure(error)) throw error;
        refusals.refused({ host_id: agentId }, error, 'task report');
      }
    }
    // An ack means stored: the reports are committed before it, and a heartbeat whose reports the
    // storage refused is not acknowledged. The stream ends instead (UNAVAILABLE, ERR_STORAGE_*), so
    // the agent keeps them queued and sends them again on its next stream.
    const { notStored, effects } = reports.length > 0 ? await tasks.report(agentId, reports) : { notStored: undefined, effects: [] };
    if (notStored) {
      await runEffects(effects);
      presence.detach(session, 'stream-closed');
      session.close(notStored);
      return;
    }
    // Not through session.send: a report may have just closed this session (see close), and its ack still goes out.
    writeToPeer({ ack: { sequence: heartbeat.sequence, received_unix_ms: receivedAt, clock_offset_ms: clockOffsetMs ?? 0, clock_offset_known: clockOffsetMs !== null } });
    // What the committed reports imply (a deleted host's stream closed) follows the ack.
    await runEffects(effects);
    if (ended) return;
    if (!reportOnly) await trust.heard(message.trust_generation, message.trust_digest);
    if (!reportOnly && !refreshing && credentialExpiresAt * 1000 - receivedAt < (jwt.ttlSecs * 1000) / 3) {
      refreshCredential(receivedAt).catch((error: unknown) => log.error({ err: error, host_id: agentId }, 'credential refresh failed'));
    }
  };
  /**
   * On the first heartbeat, and on the first one carrying HostFacts if earlier ones carried none:
   * judges the claim of the machine behind the stream against the host as stored now (an admin may
   * have flagged or resolved it since the stream opened); refused, the stream ends with the refusal.
   * Once accepted the stream becomes the host's current one if it is not yet and its queued tasks
   * go out. Stores the facts when they changed. False when the stream was ended.
   */
  const claimIdentityOnce = async (heartbeat: Heartbeat, receivedAt: number): Promise<boolean> => {
    const facts = heartbeat.facts;
    if (!judged || (facts !== undefined && session.claimant === undefined)) {
      const current = await stores.hosts.get(agentId);
      if (!current || !mayStream(current)) {
        refuse(new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the host is ${describeHost(current)}; only active hosts may stream`, { host_id: agentId }), 'heartbeat stream');
        return false;
      }
      knownHost = current;
      const claimant = facts && { instanceId: facts.instanceId, machineFingerprint: facts.machineFingerprint, hostname: facts.hostname, source: peerSource(call.getPeer()) };
      // Set before the judgement: claimIdentity compares it with the claimant of the host's live stream, which may be this one.
      session.claimant = claimant;
      const refusal = await claimIdentity(deps, knownHost, claimant, receivedAt);
      if (refusal) {
        refuse(refusal, 'heartbeat stream');
        return false;
      }
      if (!judged) {
        judged = true;
        if (!attached) attach(heartbeat.intervalSecs);
        // Tasks only once the machine behind the stream was accepted: a retired clone must get none.
        // Awaited, so an unacknowledged task is sent again (queued, then sent) before this heartbeat's
        // reports about it are applied. Never rejects: a failure is logged, the tasks go out later.
        await tasks.connected(agentId);
        if (ended) return false;
        await offerKeyRotation(deps, knownHost, (rotation) => {
          writeToPeer(rotation);
          return true;
        });
      }
    }
    if (facts !== undefined) knownHost = await refreshFacts(deps, knownHost, facts, receivedAt);
    return true;
  };
  const finish = (): void => {
    clearTimeout(reportDeadline);
    clearTimeout(firstHeartbeatDeadline);
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
