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
import { mayRead, maySend, nextStreamState, type StreamEvent, type StreamState } from '../heartbeat/stream-states.ts';
import type { CloseReason, LiveSession, PresenceRegistry } from '../presence/registry.ts';
import type { PresenceService } from '../presence/service.ts';
import type { Effect, Host, Stores } from '../store/index.ts';
import { runEffects as runEffectsOf } from '../store/unit-of-work.ts';
import type { TaskService } from '../tasks/service.ts';
import type { RolloutService } from '../releases/rollouts.ts';
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
import { writeWithBackpressure } from './stream-writer.ts';

type HeartbeatCall = grpc.ServerDuplexStream<HeartbeatRequest__Output, HeartbeatResponse>;

export interface HeartbeatDeps {
  stores: Stores;
  jwt: AgentJwtAuthority;
  presence: PresenceRegistry;
  vitals: VitalsWriter;
  services: { readonly tasks: TaskService; readonly presence: PresenceService; readonly rollouts: RolloutService };
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
 * ERR_STREAM_RATE_LIMITED); a peer that does not read what we write is not read either until it
 * does (backpressure), and is ended as a slow consumer when a write waits longer than
 * STREAM_DRAIN_DEADLINE_MS (grpc/stream-writer.ts); refusals are logged aggregated (RefusalLog).
 * Each stream's lifecycle is the state machine of heartbeat/stream-states.ts.
 */
export function heartbeatHandler(deps: HeartbeatDeps & IngestGuards): grpc.handleBidiStreamingCall<HeartbeatRequest__Output, HeartbeatResponse> {
  return (call: HeartbeatCall) => {
    // openStream ends the call itself on every refusal; this is the last resort for a fault of ours.
    openStream(call, deps).catch((error: unknown) => {
      deps.log.error({ err: error, peer: peerSource(call.getPeer()) }, 'heartbeat stream failed');
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

/**
 * Runs one stream's lifecycle (heartbeat/stream-states.ts): what happens on the call becomes an
 * event, `step` moves the state by the table, and `enterState` alone runs the effects of the state
 * entered. Besides the state the stream keeps only its inputs: whether a heartbeat is in hand (read
 * and not yet answered), whether presence holds it, and the status it ends with.
 */
async function openStream(call: HeartbeatCall, deps: HeartbeatDeps & IngestGuards): Promise<void> {
  const { stores, jwt, presence, vitals, log, refusals, heartbeatRate } = deps;
  const { tasks, rollouts } = deps.services;
  let state: StreamState = 'opening';
  /** The refusal of a host that may not stream (asked at open, at each refresh and at the claim). */
  const notActive = (host: Host | undefined): CtOpsError =>
    new CtOpsError('ERR_AGENT_NOT_ACTIVE', `the host is ${describeHost(host)}; only active hosts may stream`, { host_id: agentId });
  /** The status the stream ends with: undefined for OK. */
  let closeWith: CtOpsError | undefined;
  /** A heartbeat was read and is not yet answered: draining waits for its ack. */
  let handling = false;
  /** Presence holds this stream as its host's current one (attached at open, or once its claim was accepted). */
  let attached = false;
  /** The host's queued tasks written on this stream once its claim was accepted; reports wait for it. */
  let tasksConnected: Promise<void> = Promise.resolve();
  let streamClaimed: Promise<void> = Promise.resolve();
  let agentId = '';
  let deadline: NodeJS.Timeout | undefined;
  const timeout = (ms: number): void => {
    clearTimeout(deadline);
    deadline = setTimeout(() => step('deadline'), ms);
  };
  /** Applies `event`; an event the state does not take (a second close, a heartbeat after the end) changes nothing. */
  const step = (event: StreamEvent, error?: CtOpsError): void => {
    const next = nextStreamState(state, event);
    if (next === undefined) return;
    const previous = state;
    state = next;
    if (next === 'draining' || (next === 'closed' && previous !== 'draining')) closeWith = error;
    if (next !== previous) enterState(previous, next, event);
  };
  const enterState = (previous: StreamState, next: StreamState, event: StreamEvent): void => {
    switch (next) {
      case 'awaiting-claim':
        startReading();
        if (!presence.isStreaming(agentId)) {
          attach(firstInterval);
        } else {
          // Another stream holds the host: this one replaces it only once its first heartbeat said which
          // machine it is (claimIdentity), so a second machine cannot displace the first unseen.
          // Bounded apart from the interval: a silent stream holds one of the host's few open calls
          // (HEARTBEAT_OPEN_CALLS_PER_HOST), and an hour's interval must not let two of them lock the host out.
          timeout(Math.min(2 * firstInterval * 1000, FIRST_HEARTBEAT_MAX_MS));
        }
        return;
      case 'reporting':
        log.info({ host_id: agentId, peer: call.getPeer() }, 'report stream opened');
        // No presence deadline watches it: a reporter has a minute to say what it came to say.
        timeout(REPORT_STREAM_MAX_MS);
        startReading();
        return;
      case 'streaming':
        clearTimeout(deadline);
        if (!attached) attach(firstInterval);
        streamClaimed = deps.services.presence.claimed(session);
        // Tasks only once the machine behind the stream was accepted: a retired clone must get none.
        // Never rejects: a failure is logged, the tasks go out later.
        // After the stream's holder is recorded, so the first ack finds the host online on every instance.
        tasksConnected = streamClaimed.then(() => tasks.connected(agentId));
        offerKeyRotation(deps, knownHost, session.send).catch((error: unknown) => log.error({ err: error, host_id: agentId }, 'key rotation offer failed'));
        return;
      case 'draining':
        clearTimeout(deadline);
        // Read nothing more: a peer that keeps writing is held back by flow control, not discarded at line rate.
        call.pause();
        presence.detach(session, 'stream-closed');
        if (!handling) step('answered');
        return;
      case 'closed':
        clearTimeout(deadline);
        call.pause();
        presence.detach(session, 'stream-closed');
        // Gone (cancelled, or ended by the writer as a slow consumer): no status can or need be sent.
        if (event === 'peer-cancelled' || event === 'write-stalled') return;
        if (closeWith) call.emit('error', toServiceError(closeWith));
        else call.end();
        return;
      case 'opening':
        throw new CtOpsError('ERR_INTERNAL', `a heartbeat stream cannot return to opening from ${previous}`);
    }
  };
  /** Ends the stream with a refusal of what the peer sent; logged under `who` (the host, or the peer before the host is known). */
  const refuse = (error: unknown, what: string, who: { host_id: string } | { peer: string } = { host_id: agentId }): void => {
    // A storage failure is ours, not the peer's: logged as such; the stream ends UNAVAILABLE unacknowledged.
    if (isStorageFailure(error)) log.error({ ...who, ...failureFields(error) }, 'heartbeat not stored');
    else refusals.refused(who, error, what);
    step('refused', error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error }));
  };
  call.on('end', () => step('peer-ended'));
  call.on('cancelled', () => step('peer-cancelled'));

  /**
   * Writes to the peer one message at a time, each once the one before was accepted
   * (writeWithBackpressure): true once this one was accepted; false when the stream ended first.
   * A peer that does not read is not read either: the heartbeat in hand waits for its ack's write.
   */
  let lastWrite: Promise<unknown> = Promise.resolve();
  const write = (message: HeartbeatResponse): Promise<boolean> => {
    const accepted = lastWrite.then(async () => {
      if (state === 'closed') return false;
      try {
        await writeWithBackpressure(call, message);
        return true;
      } catch (error) {
        const slow = error instanceof CtOpsError && error.code === 'ERR_STREAM_SLOW_CONSUMER';
        if (slow) log.warn({ host_id: agentId, drain_deadline_ms: error.details.drain_deadline_ms }, 'heartbeat stream ended: the agent did not read');
        step(slow ? 'write-stalled' : 'peer-cancelled');
        return false;
      }
    });
    lastWrite = accepted;
    return accepted;
  };
  const session: LiveSession = {
    get agentId() {
      return agentId;
    },
    // False when not sent: the stream is not streaming (its claim not judged yet, or ending) or ended before the write was accepted.
    send: (message) => (maySend(state) ? write(message) : Promise.resolve(false)),
    close: (error, reason) => step(closeEvent(error, reason), error),
  };

  let host: Host;
  let credentialExpiresAt = 0;
  try {
    const credential = await authenticateCall(call.metadata, jwt, Date.now());
    agentId = credential.agentId;
    if (call.cancelled) return;
    await admitOpen(call, agentId, deps);
    // Read fresh where it is decided: a host revoked a moment ago must not stream.
    const current = await stores.hosts.get(agentId);
    if (!current || !mayStream(current)) {
      throw notActive(current);
    }
    const stale = credentialRefusal(current, credential.issuedAt);
    if (stale) throw stale;
    host = current;
    credentialExpiresAt = credential.expiresAt;
  } catch (error) {
    refuse(error, 'heartbeat stream', { peer: peerSource(call.getPeer()) });
    return;
  }
  // The host's latest record (each claim reads it again, facts update it): the only one the stream
  // keeps, so no closure refers to `host` (issue 14: a second ~1.3 KB record per stream).
  let knownHost = host;
  /** The interval presence watches the stream with: the host's stored one until the claim, then its first heartbeat's. */
  let firstInterval = host.heartbeatIntervalSecs ?? DEFAULT_INTERVAL_SECS;
  const clock = new HostClockWatch(agentId, host.clockOffsetMs, log);
  // The trust bundle goes out once the stream's claim is judged, like any message (session.send).
  const trust = deps.certs.watchTrust(agentId, session.send);
  const attach = (intervalSecs: number): void => {
    attached = true;
    presence.attach(session, intervalSecs);
    log.info({ host_id: agentId, peer: call.getPeer() }, 'heartbeat stream opened');
  };
  // A report-only stream (the uninstaller's report-task) carries reports and nothing else: it must
  // not replace the agent's own stream, take its tasks, or record vitals of a machine being emptied.
  const reportOnly = call.metadata.get(REPORT_ONLY_METADATA)[0] === '1';

  /**
   * Issues a fresh JWT when the current one is within a third of its lifetime of expiry, to a host
   * that may still stream by its record read now (never to one revoked since the stream opened).
   */
  const refreshCredential = async (nowMs: number): Promise<void> => {
    if (credentialExpiresAt * 1000 - nowMs >= (jwt.ttlSecs * 1000) / 3) return;
    const current = await stores.hosts.get(agentId);
    if (!current || !mayStream(current)) {
      refuse(notActive(current), 'heartbeat stream');
      return;
    }
    const issued = await jwt.issue(agentId, nowMs);
    if (await session.send({ credential: { jwt: issued.jwt, jwt_expires_unix: issued.expiresAt } })) {
      credentialExpiresAt = issued.expiresAt;
      log.info({ host_id: agentId, expires_at: issued.expiresAt }, 'credential refreshed');
    }
  };

  /**
   * Reading starts once the stream is admitted. The rate limit answers asynchronously and a
   * heartbeat's ack waits for the peer to read: the call is paused while a heartbeat is in hand, so
   * heartbeats are handled one at a time, in the order they came.
   */
  const startReading = (): void => {
    call.on('data', (message: HeartbeatRequest__Output) => {
      if (!mayRead(state)) return;
      call.pause();
      handling = true;
      // A rate refusal, or a failure of ours while handling, ends the stream through the refusal log.
      heartbeatRate
        .take(agentId)
        .then(() => handle(message))
        .catch((error: unknown) => refuse(error, 'heartbeat'))
        .finally(() => {
          handling = false;
          if (state === 'draining') step('answered');
          else if (mayRead(state)) call.resume();
        })
        .catch((error: unknown) => log.error({ err: error, host_id: agentId }, 'heartbeat handling failed'));
    });
  };
  const runEffects = (effects: readonly Effect[]): Promise<void> =>
    runEffectsOf(effects, (error) => log.error({ err: error, host_id: agentId }, 'an effect after commit failed'));
  /** One heartbeat within the rate: validated, its vitals queued, its reports applied, then acknowledged. */
  const handle = async (message: HeartbeatRequest__Output): Promise<void> => {
    // The stream may have begun to end while the heartbeat waited for the rate.
    if (!mayRead(state)) return;
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
    // A task re-queued as this stream connected is sent again first, so its report finds it sent.
    await tasksConnected;
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
      return step('refused', notStored);
    }
    if (message.update_status) {
      try {
        await rollouts.report(agentId, message.update_status, receivedAt);
      } catch (error) {
        // As a task report: storage failing ends the stream unacknowledged; a malformed report is refused and acknowledged.
        if (isStorageFailure(error)) throw error;
        refusals.refused({ host_id: agentId }, error, 'update status');
      }
    }
    // A report-only stream (the uninstaller's) is offered nothing.
    const updateOffer = reportOnly ? undefined : rollouts.offerFor(knownHost, heartbeat.agentVersion, receivedAt);
    // Not through session.send: what the reports imply may end this stream (a successful uninstall
    // deletes the host: draining), and its ack still goes out before the status.
    await write({ ack: { sequence: heartbeat.sequence, received_unix_ms: receivedAt, clock_offset_ms: clockOffsetMs ?? 0, clock_offset_known: clockOffsetMs !== null, update_offer: updateOffer ?? null } });
    if (updateOffer) void rollouts.offered(agentId, updateOffer.version, receivedAt).catch((error: unknown) => log.error({ err: error, host_id: agentId }, 'recording an update offer failed'));
    // What the committed reports imply (a deleted host's stream closed) follows the ack.
    await runEffects(effects);
    if (state !== 'streaming') return;
    await trust.heard(message.trust_generation, message.trust_digest);
    await refreshCredential(receivedAt).catch((error: unknown) => log.error({ err: error, host_id: agentId }, 'credential refresh failed'));
  };
  /**
   * On the first heartbeat, and on the first one carrying HostFacts if earlier ones carried none:
   * judges the claim of the machine behind the stream against the host as stored now (an admin may
   * have revoked, flagged or resolved it since the stream opened); refused, the stream ends with the
   * refusal. Once accepted the stream moves to streaming (heartbeat/stream-states.ts). Stores the
   * facts when they changed. False when the stream was ended.
   */
  const claimIdentityOnce = async (heartbeat: Heartbeat, receivedAt: number): Promise<boolean> => {
    const facts = heartbeat.facts;
    if (state === 'awaiting-claim' || (facts !== undefined && session.claimant === undefined)) {
      const current = await stores.hosts.get(agentId);
      if (!current || !mayStream(current)) {
        refuse(notActive(current), 'heartbeat stream');
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
      firstInterval = heartbeat.intervalSecs;
      step('claim-accepted');
      // The stream may have begun to end while the claim was judged (a revoke, a replacing stream).
      if (state !== 'streaming') return false;
    }
    if (facts !== undefined) knownHost = await refreshFacts(deps, knownHost, facts, receivedAt);
    return true;
  };
  step(reportOnly ? 'admitted-report-only' : 'admitted');
}

/** The event a close asked by presence is: `reason` says why (presence/registry.ts CloseReason). */
function closeEvent(error: CtOpsError | undefined, reason: CloseReason | undefined): StreamEvent {
  switch (reason) {
    case 'replaced':
      return 'replaced';
    case 'heartbeat-timeout':
      return 'deadline';
    case 'appliance-stopping':
      return 'server-stopping';
    case 'revoked':
      return 'revoked';
    case 'stream-closed':
    case undefined:
      return error ? 'refused' : 'deadline';
  }
}
