import { randomBytes } from 'node:crypto';
import { CtOpsError, GrpcCode } from '../../common/errors.ts';
import { reloadConfig } from '../config/reload.ts';
import type { AgentConfig, LoadedConfig } from '../config/types.ts';
import { TaskUpdateQueue } from '../heartbeat/task-updates.ts';
import { HeartbeatSession, type SelfUpdate, type SessionEnd } from '../heartbeat/session.ts';
import { jwtExpiry } from '../identity/jwt-expiry.ts';
import { loadIdentity, type AgentIdentity } from '../identity/load.ts';
import { writeAgentState, type AgentCredential } from '../identity/state.ts';
import type { AgentLogger } from '../log/logger.ts';
import { attemptRegistration } from '../registration/attempt.ts';
import type { RegisterOutcome } from '../registration/outcome.ts';
import type { HostDescription } from '../registration/request.ts';
import type { HostFacts, TrustBundle__Output } from '../../common/proto.ts';
import { forgetRetiredKeys, retireIdentity } from '../identity/retire.ts';
import { abandonKeyRotation, completeKeyRotation, startKeyRotation, type PendingRotation } from '../identity/rotation.ts';
import type { AgentTrust } from '../identity/trust.ts';
import { CERTIFICATE_TIME_WARNING, isCertificateTimeFailure, isTlsTrustFailure, untrustedError, type IngestEndpoint } from '../transport/failure.ts';
import { isTransportFailure, type IngestAddresses } from '../transport/addresses.ts';
import type { IngestTransport, RpcFailure } from '../transport/types.ts';
import type { VitalsSampler } from '../vitals/sample.ts';
import { TaskLedger } from '../tasks/ledger.ts';
import { TaskRunner, type TaskHandler, type TaskKind } from '../tasks/runner.ts';
import { softwareInventoryHandler } from '../tasks/software-inventory.ts';
import { Backoff } from './backoff.ts';
import { INITIAL_INPUTS, nextState, type LifecycleInputs, type LifecycleState } from './state.ts';

export interface AgentDeps {
  readonly config: AgentConfig;
  readonly transport: IngestTransport;
  /** The ingest address `transport` uses now, shared with it: the agent moves it on a transport failure. */
  readonly addresses: IngestAddresses;
  readonly host: HostDescription;
  /** The host's facts now (hostname, addresses … re-read on each call); sent on each stream and on change. */
  readonly facts?: () => HostFacts;
  readonly vitals: VitalsSampler;
  /** The CAs trusted for the appliance's TLS, which `transport` uses too; without it (a transport a test builds by hand, with no TLS) trust bundles are ignored. */
  readonly trust?: AgentTrust;
  readonly log: AgentLogger;
  /** Re-reads the configuration file (config_reload task). */
  readonly reload: () => LoadedConfig;
  /** Task handlers besides config_reload, which the agent itself runs (software_inventory by default). */
  readonly taskHandlers?: Readonly<Partial<Record<TaskKind, TaskHandler>>>;
  /** Self-update (agent/update/updater.ts); without it offers are ignored. */
  readonly selfUpdate?: SelfUpdate & { stop(): void };
  readonly now?: () => number;
  readonly random?: () => number;
}

export interface AgentExit {
  readonly exitCode: number;
  /** Set when the agent stopped on a fatal error. */
  readonly error: CtOpsError | undefined;
}

/**
 * The agent's lifecycle: nextState (pure) picks the state from the inputs, enterState
 * performs that state's side effect, and each event handler updates the inputs and
 * steps the machine. No other code changes the state.
 */
export class Agent {
  private readonly deps: AgentDeps;
  private readonly now: () => number;
  private readonly backoff: Backoff;
  private readonly updates = new TaskUpdateQueue();
  /** Created once the data directory (and so the task ledger) is available. */
  private tasks: TaskRunner | undefined;
  private config: AgentConfig;
  private inputs: LifecycleInputs = INITIAL_INPUTS;
  private current: LifecycleState | undefined;
  private stepping = false;
  private identity: AgentIdentity | undefined;
  private credential: AgentCredential | undefined;
  /** The appliance has a record of this key, so Register needs no token. */
  private keyKnown = false;
  private session: HeartbeatSession | undefined;
  private timer: NodeJS.Timeout | undefined;
  /**
   * Consecutive outcomes (Register or stream) that were an untrusted certificate, each at the address
   * then in use: fatal once every configured address was (one address: the first), decisions.md 121.
   */
  private untrustedInARow = 0;
  /** Identifies the Register call in flight, so a late answer for an abandoned one is ignored. */
  private registration = 0;
  private readonly exited: Promise<AgentExit>;
  private resolveExit: (exit: AgentExit) => void = () => undefined;

  constructor(deps: AgentDeps) {
    this.deps = deps;
    this.config = deps.config;
    this.now = deps.now ?? Date.now;
    this.backoff = new Backoff(deps.random ?? Math.random);
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  get state(): LifecycleState | undefined {
    return this.current;
  }

  /** Starts the machine; resolves once it reaches 'stopped'. */
  run(): Promise<AgentExit> {
    this.step();
    return this.exited;
  }

  /** The JWT the agent holds now (self-update downloads carry it); undefined before the first Register. */
  get jwt(): string | undefined {
    return this.credential?.jwt;
  }

  /** Sends a heartbeat now on the open stream, if any (self-update has a new status to report). */
  flushHeartbeat(): void {
    this.session?.flush();
  }

  /** A signal asked the agent to stop: end the stream cleanly and exit 0. */
  stop(signal: string): void {
    if (this.inputs.stop !== undefined) return;
    this.deps.selfUpdate?.stop();
    this.deps.log.info({ signal }, 'agent stopping');
    this.update({ stop: { kind: 'signal', signal } });
  }

  private update(patch: Partial<LifecycleInputs>): void {
    this.inputs = { ...this.inputs, ...patch };
    this.step();
  }

  private fail(error: CtOpsError): void {
    if (this.inputs.stop === undefined) this.update({ stop: { kind: 'fatal', error } });
  }

  private step(): void {
    // Handlers run from enterState step again; the loop below picks their changes up.
    if (this.stepping) return;
    this.stepping = true;
    try {
      for (let next = nextState(this.inputs); next !== this.current; next = nextState(this.inputs)) {
        const previous = this.current;
        this.current = next;
        this.deps.log.debug({ from: previous ?? null, to: next }, 'lifecycle state');
        this.enterState(next);
      }
    } finally {
      this.stepping = false;
    }
  }

  private enterState(next: LifecycleState): void {
    if (next !== 'connecting' && next !== 'streaming') this.closeSession();
    clearTimeout(this.timer);
    switch (next) {
      case 'needs-identity':
        return this.loadIdentity();
      case 'needs-registration':
        return this.register();
      case 'awaiting-approval':
        return this.waitThen(this.inputs.approvalPollMs ?? 0, { approvalPollMs: undefined });
      case 'backing-off':
        return this.waitThen(this.inputs.retryInMs ?? 0, { retryInMs: undefined });
      case 'connecting':
        return this.openSession();
      case 'streaming':
        this.deps.log.info(this.deps.addresses.fields(), 'heartbeat stream opened');
        return;
      case 'stopped':
        return this.finish();
    }
  }

  private loadIdentity(): void {
    let identity: AgentIdentity;
    try {
      identity = loadIdentity(this.config.dataDir, this.deps.log);
    } catch (error) {
      return this.fail(asCtOpsError(error, 'ERR_DATA_DIR_UNUSABLE'));
    }
    this.identity = identity;
    this.credential = identity.credential;
    if (this.tasks === undefined) {
      this.tasks = new TaskRunner({
        ledger: TaskLedger.open(this.config.dataDir, this.deps.log),
        updates: this.updates,
        handlers: this.taskHandlers(),
        flush: () => this.session?.flush(),
        log: this.deps.log,
        now: this.now,
      });
      this.tasks.resume();
    }
    this.keyKnown = identity.credential !== undefined;
    this.deps.log.info({ data_dir: this.config.dataDir }, 'agent identity ready');
    // A rotation saved before a stop is completed first: the appliance may already know only the new key.
    this.update({ identity: 'loaded', credential: identity.rotation ? 'none' : this.credentialState() });
  }

  /**
   * Any JWT the appliance issued is used until the appliance refuses it: only the appliance's clock
   * judges its expiry, so a host clock off by days neither discards a valid JWT nor loops on Register.
   */
  private credentialState(): LifecycleInputs['credential'] {
    return this.credential === undefined ? 'none' : 'usable';
  }

  private waitThen(delayMs: number, patch: Partial<LifecycleInputs>): void {
    this.timer = setTimeout(() => this.update(patch), delayMs);
  }

  private register(): void {
    const identity = this.identity;
    if (identity === undefined) return;
    const attempt = ++this.registration;
    // The hostname as it is now: a host renamed since the agent started registers under its new name.
    const hostname = this.deps.facts?.().hostname ?? this.deps.host.hostname;
    const rotation = identity.rotation;
    const deps = {
      transport: this.deps.transport,
      // In a rotation the new key registers, vouched for by the current one and the appliance's nonce.
      keys: rotation?.keys ?? identity.keys,
      predecessor: rotation ? identity.keys : this.keyKnown ? undefined : identity.predecessor,
      rotationNonce: rotation?.nonce,
      host: { ...this.deps.host, hostname },
      orgToken: this.config.orgToken,
      address: this.deps.addresses.current,
      log: this.deps.log,
      now: this.now,
      nonce: () => new Uint8Array(randomBytes(16)),
      tlsError: (reason: string) => untrustedError(this.endpoint(), reason, undefined, this.deps.trust?.generation),
    };
    attemptRegistration(deps, this.keyKnown)
      .catch((error: unknown): RegisterOutcome => ({ kind: 'retry', failure: { grpcCode: GrpcCode.UNKNOWN, errorCode: undefined, details: String(error) }, clockSkew: false }))
      .then((outcome) => {
        if (attempt === this.registration && this.current === 'needs-registration') this.onRegistered(outcome);
      });
  }

  private onRegistered(outcome: RegisterOutcome): void {
    const log = this.deps.log;
    if (outcome.kind === 'fatal' && outcome.error.code === 'ERR_INGEST_TLS_UNTRUSTED' && this.untrustedElsewhereToTry(true)) {
      log.error({ error_code: outcome.error.code, error: outcome.error.message }, 'ingest certificate not trusted; trying the next address');
      return this.retryAfterFailure({ grpcCode: GrpcCode.UNAVAILABLE, errorCode: undefined, details: outcome.error.message });
    }
    if (outcome.kind !== 'fatal') this.untrustedElsewhereToTry(false);
    switch (outcome.kind) {
      case 'active': {
        this.keyKnown = true;
        this.successorEnrolled();
        this.credential = { agentId: outcome.agentId, jwt: outcome.jwt, jwtExpiresUnix: outcome.jwtExpiresUnix ?? jwtExpiry(outcome.jwt) };
        // The new JWT is saved before the rotated key replaces the old one: a stop in between finds the
        // saved rotation and completes it, never the new key beside a JWT the appliance now refuses.
        this.saveCredential();
        this.keyRotated();
        log.info({ agent_id: outcome.agentId }, 'agent registered and active');
        return this.update({ credential: 'usable' });
      }
      case 'pending':
        if (outcome.agentId !== '') {
          this.keyKnown = true;
          this.successorEnrolled();
        }
        log.info({ agent_id: outcome.agentId, status: outcome.status, retry_after_secs: outcome.retryAfterSecs, reason: outcome.message }, 'awaiting approval');
        // Spread like a hinted retry: hosts enrolled together would otherwise all poll on the same second.
        return this.update({ approvalPollMs: this.backoff.poll(outcome.retryAfterSecs * 1000) });
      case 'refused':
        log.error({ agent_id: outcome.agentId, status: outcome.status, reason: outcome.message }, 'agent revoked; stopping');
        return this.fail(new CtOpsError('ERR_AGENT_REVOKED', `the appliance ${outcome.status} this host${outcome.message ? ` (${outcome.message})` : ''}; not retrying`, { agent_id: outcome.agentId, status: outcome.status }));
      case 'retry': {
        if (outcome.failure.errorCode === 'ERR_IDENTITY_RETIRED') return this.retireIdentity();
        if (outcome.failure.errorCode === 'ERR_KEY_ROTATION_REFUSED') this.abandonRotation();
        return this.retryAfterFailure(outcome.failure, outcome.certificateTime ? 'certificate-time' : outcome.clockSkew ? 'clock-skew' : undefined);
      }
      case 'fatal':
        return this.fail(outcome.error);
    }
  }

  /**
   * Waits, then registers again; a throttled Register names how long to stay away and the agent
   * waits at least that long. After a transport failure the next attempt goes to the next address.
   */
  private retryAfterFailure(failure: RpcFailure, cause?: 'certificate-time' | 'clock-skew'): void {
    const log = this.deps.log;
    const hintMs = failure.retryAfterMs;
    const delay = this.backoff.next(hintMs);
    const fields = { ...this.deps.addresses.fields(), code: failure.grpcCode, error_code: failure.errorCode ?? null, details: failure.details, retry_after_ms: hintMs ?? null, retry_in_ms: delay };
    if (cause === 'certificate-time') log.warn({ ...fields, local_time: new Date().toISOString() }, CERTIFICATE_TIME_WARNING);
    else if (cause === 'clock-skew') log.warn(fields, 'host clock differs from the appliance');
    else log.warn(fields, 'registration failed');
    if (isTransportFailure(failure)) this.moveToNextAddress();
    this.update({ retryInMs: delay });
  }

  /** The address in use with the configured CA file, as a TLS error names them. */
  private endpoint(): IngestEndpoint {
    return { address: this.deps.addresses.current, caCertFile: this.config.ingest.caCertFile };
  }

  /** A transport failure at the address in use: the next connection goes to the next configured address (a list of one stays). */
  private moveToNextAddress(): void {
    const addresses = this.deps.addresses;
    if (addresses.all.length === 1) return;
    const failed = addresses.current.target;
    addresses.advance();
    this.deps.log.info({ failed_address: failed, ...addresses.fields() }, 'ingest address failed; the next connection goes to the next address');
  }

  /**
   * Counts an outcome: an untrusted certificate at the address in use (`untrusted`) or anything
   * else (which ends the run). True while some address has not yet refused trust in this run:
   * retrying there may help; false once every address did, which retrying cannot fix.
   */
  private untrustedElsewhereToTry(untrusted: boolean): boolean {
    this.untrustedInARow = untrusted ? this.untrustedInARow + 1 : 0;
    return untrusted && this.untrustedInARow < this.deps.addresses.all.length;
  }

  /** The appliance knows the new key: the retired key that vouched for it is no longer needed. */
  private successorEnrolled(): void {
    const identity = this.identity;
    if (identity?.predecessor === undefined) return;
    forgetRetiredKeys(identity.paths);
    this.identity = { ...identity, predecessor: undefined };
    this.deps.log.info({ data_dir: identity.paths.dataDir }, 'new identity enrolled; retired key removed');
  }

  /**
   * The appliance kept this machine for a cloned identity and asks it to rotate its key: the new
   * key is saved first, then registered in place of the current one (the stream ends; a Register
   * by the new key with the rotation proof follows, and a new stream with the JWT it returns).
   * A request while one is in progress is ignored (the appliance offers again on a later stream).
   */
  private onKeyRotation(nonce: Uint8Array): void {
    const identity = this.identity;
    if (identity === undefined || identity.rotation !== undefined) return;
    let rotation: PendingRotation;
    try {
      rotation = startKeyRotation(identity.paths, nonce);
    } catch (error) {
      this.deps.log.error({ error: (error as Error).message }, 'cannot start the key rotation; keeping the current key');
      return;
    }
    this.identity = { ...identity, rotation };
    this.deps.log.info({ agent_id: this.credential?.agentId ?? null }, 'the appliance asked for a key rotation; registering a new key');
    this.update({ credential: 'none', stream: 'none' });
  }

  /** The appliance registered the rotated key: it becomes the identity and the old one is deleted. */
  private keyRotated(): void {
    const identity = this.identity;
    if (identity?.rotation === undefined) return;
    this.identity = { ...identity, keys: identity.rotation.keys, rotation: undefined };
    try {
      completeKeyRotation(identity.paths, identity.rotation);
    } catch (error) {
      // In memory the new key is the identity already; the saved rotation completes at the next start.
      this.deps.log.error({ error: (error as Error).message }, 'cannot save the rotated key');
      return;
    }
    this.deps.log.info({ data_dir: identity.paths.dataDir }, 'key rotated; the old key is deleted');
  }

  /** The appliance refused the rotation (no longer offered, or replaced by a newer offer): the current key stays. */
  private abandonRotation(): void {
    const identity = this.identity;
    if (identity?.rotation === undefined) return;
    abandonKeyRotation(identity.paths);
    this.identity = { ...identity, rotation: undefined };
    this.deps.log.warn({}, 'the appliance refused the key rotation; keeping the current key');
  }

  /**
   * ERR_IDENTITY_RETIRED: an admin kept another machine that shares this identity. Move the key
   * aside (it vouches for the next one), then load a fresh identity and enrol it as a new host.
   */
  private retireIdentity(): void {
    const identity = this.identity;
    if (identity === undefined) return;
    try {
      retireIdentity(identity.paths);
    } catch (error) {
      return this.fail(asCtOpsError(error, 'ERR_DATA_DIR_UNUSABLE'));
    }
    this.deps.log.warn({ agent_id: this.credential?.agentId ?? null }, 'the appliance retired this identity (another machine kept it); enrolling as a new host');
    this.identity = undefined;
    this.credential = undefined;
    this.keyKnown = false;
    this.update({ identity: 'absent', credential: 'none', stream: 'none', retryInMs: undefined });
  }

  /** A failure to persist is logged, not fatal: the credential still works in memory. */
  private saveCredential(): void {
    if (this.identity === undefined || this.credential === undefined) return;
    try {
      writeAgentState(this.identity.paths, this.credential);
    } catch (error) {
      this.deps.log.error({ path: this.identity.paths.state, error: (error as Error).message }, 'cannot save agent state');
    }
  }

  private openSession(): void {
    const credential = this.credential;
    if (credential === undefined) return this.update({ credential: 'none' });
    this.deps.log.info({ ...this.deps.addresses.fields(), interval_secs: this.config.heartbeatIntervalSecs }, 'starting heartbeat');
    this.session = new HeartbeatSession({
      transport: this.deps.transport,
      credential,
      intervalSecs: this.config.heartbeatIntervalSecs,
      agentVersion: this.deps.host.agentVersion,
      vitals: this.deps.vitals,
      updates: this.updates,
      now: this.now,
      log: this.deps.log,
      ...(this.deps.facts ? { facts: this.deps.facts } : {}),
      trustGeneration: () => this.deps.trust?.generation ?? 0,
      trustDigest: () => this.deps.trust?.digest ?? Buffer.alloc(0),
      ...(this.deps.selfUpdate ? { selfUpdate: this.deps.selfUpdate } : {}),
      events: {
        onFirstAck: () => this.update({ stream: 'acknowledged' }),
        onCredential: (jwt, expiresUnix) => this.onCredential(jwt, expiresUnix),
        onTask: (task) => this.tasks?.receive(task),
        onCancel: (taskId) => this.tasks?.cancel(taskId),
        onKeyRotation: (nonce) => this.onKeyRotation(nonce),
        onTrustBundle: (bundle) => this.onTrustBundle(bundle),
        onDelivered: (reports) => this.tasks?.delivered(reports),
        onEnd: (end) => this.onStreamEnd(end),
      },
    });
  }

  /**
   * The appliance sent the CAs to trust (a CA rotation): verified against the CAs trusted now and
   * stored (AgentTrust.accept), they are used from the next connection; the stream open now keeps
   * its verified connection. The next heartbeat goes out at once to report the new generation. A
   * bundle refused (ERR_TRUST_BUNDLE_INVALID: forged, stale) is logged and changes nothing.
   */
  private onTrustBundle(message: TrustBundle__Output): void {
    const trust = this.deps.trust;
    if (trust === undefined) return;
    const held = trust.digest;
    try {
      trust.accept({ generation: message.generation, caPems: message.ca_certificates_pem, signature: message.signature }, new Date(this.now()));
    } catch (error) {
      const failure = asCtOpsError(error, 'ERR_TRUST_BUNDLE_INVALID');
      this.deps.log.error({ error_code: failure.code, generation: message.generation, held_generation: trust.generation, error: failure.message }, 'trust bundle refused; keeping the current trust');
      return;
    }
    if (trust.digest.equals(held)) return;
    this.deps.log.info({ generation: trust.generation, cas: message.ca_certificates_pem.length }, 'trust bundle stored');
    this.session?.flush();
  }

  private onCredential(jwt: string, expiresUnix: number): void {
    if (this.credential === undefined || jwt === '') return;
    this.credential = { agentId: this.credential.agentId, jwt, jwtExpiresUnix: expiresUnix > 0 ? expiresUnix : jwtExpiry(jwt) };
    this.saveCredential();
    this.deps.log.info({ expires_unix: this.credential.jwtExpiresUnix ?? null }, 'credential refreshed');
  }

  private taskHandlers(): Partial<Record<TaskKind, TaskHandler>> {
    const credential = (): { agentId: string; jwt: string } | undefined => this.credential;
    return {
      software_inventory: softwareInventoryHandler({ transport: this.deps.transport, credential }),
      ...this.deps.taskHandlers,
      config_reload: async () => this.reloadConfig(),
    };
  }

  /** config_reload: re-read the file; only the heartbeat interval applies live (the result says what waits for a restart). */
  private reloadConfig(): { kind: 'done'; message: string } {
    const result = reloadConfig(this.config, this.deps.reload);
    if (!result.ok) throw new CtOpsError(result.error.code, result.message, { config_file: this.config.configFile });
    for (const warning of result.warnings) this.deps.log.warn({ warning }, 'configuration warning');
    this.config = result.config;
    this.session?.useInterval(result.config.heartbeatIntervalSecs);
    this.deps.log.info({ interval_secs: result.config.heartbeatIntervalSecs }, 'config reloaded');
    return { kind: 'done', message: result.message };
  }

  private onStreamEnd(end: SessionEnd): void {
    this.session = undefined;
    this.updates.requeueUnacknowledged();
    const { status } = end;
    const untrusted = status.grpcCode === GrpcCode.UNAVAILABLE && isTlsTrustFailure(status);
    const anotherAddressToTry = this.untrustedElsewhereToTry(untrusted);
    if (untrusted && !anotherAddressToTry) {
      return this.fail(untrustedError(this.endpoint(), status.details, undefined, this.deps.trust?.generation));
    }
    if (status.errorCode === 'ERR_IDENTITY_RETIRED') return this.retireIdentity();
    if (end.healthy) this.backoff.reset();
    // The appliance refused the JWT (expired, invalid) or the host (revoked, pending):
    // Register, by key, tells the agent which, and issues a fresh JWT if it may stream.
    const refused = status.grpcCode === GrpcCode.UNAUTHENTICATED || status.grpcCode === GrpcCode.PERMISSION_DENIED;
    // A stream the appliance ended for the host's rate (ERR_STREAM_RATE_LIMITED) says when to come back.
    const delay = this.backoff.next(status.retryAfterMs);
    const fields = { ...this.deps.addresses.fields(), code: status.grpcCode, error_code: status.errorCode ?? null, details: status.details, ack_timeout: end.ackTimedOut, retry_after_ms: status.retryAfterMs ?? null, reconnect_in_ms: delay };
    if (status.grpcCode === GrpcCode.OK) this.deps.log.info(fields, 'heartbeat stream closed');
    else if (status.errorCode === undefined && isCertificateTimeFailure(status.details)) this.deps.log.warn({ ...fields, local_time: new Date().toISOString() }, CERTIFICATE_TIME_WARNING);
    else this.deps.log.warn(fields, 'heartbeat stream closed');
    // An appliance that took the connection but never acknowledged is as gone as one that refused it.
    if (isTransportFailure(status) || end.ackTimedOut) this.moveToNextAddress();
    this.update({ stream: 'none', credential: refused ? 'none' : this.credentialState(), retryInMs: delay });
  }

  private closeSession(): void {
    const session = this.session;
    this.session = undefined;
    session?.close();
  }

  private finish(): void {
    this.registration += 1;
    this.deps.transport.close();
    const stop = this.inputs.stop;
    const error = stop?.kind === 'fatal' ? stop.error : undefined;
    this.resolveExit({ exitCode: error?.exitCode ?? 0, error });
  }
}

function asCtOpsError(error: unknown, fallback: CtOpsError['code']): CtOpsError {
  return error instanceof CtOpsError ? error : new CtOpsError(fallback, (error as Error).message, {}, { cause: error });
}
