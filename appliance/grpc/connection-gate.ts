import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';

/**
 * How many new agent connections the appliance sets up at once: accepted and handed to TLS and
 * HTTP/2, and not yet past their first call (or closed). Enough to keep both the handshakes and
 * the event loop busy; few enough that each finishes in milliseconds, not in the seconds a whole
 * fleet reconnecting together takes (issue 14).
 */
export const CONNECTIONS_IN_SETUP = 512;
/**
 * A connection stops holding its setup slot this long (ms) after it was admitted even if it made
 * no call: a peer that connects and stays silent (or a handshake over a very slow link) must not
 * keep agents out for longer.
 */
export const SETUP_SLOT_MS = 2_000;
/**
 * The longest (ms) an accepted connection waits, unread, for a setup slot before it is refused:
 * well under an agent's connect timeout (20 s), so the agent hears a refusal and backs off on its
 * own schedule instead of timing out on a connection the appliance would set up too late.
 */
export const ADMISSION_WAIT_MS = 12_000;
/** The most connections waiting for a slot; beyond it a new one is refused at once (each holds a file descriptor). */
export const ADMISSION_QUEUE = 16_384;
/**
 * Connections handed to setup in one turn of the event loop: each costs a TLS socket's set-up
 * (about 1 ms under load), and the thousands of connections a storm brings in one accept loop, or
 * 512 slots freed together, must not be set up in one stall; the rest wait for the next turns.
 */
const ADMITS_PER_TURN = 32;
/** How often (ms) refusals are logged, as one count. */
const SHED_LOG_INTERVAL_MS = 10_000;

export interface ConnectionGateLimits {
  inSetup: number;
  slotMs: number;
  waitMs: number;
  queue: number;
}

interface Waiting {
  socket: Socket;
  since: number;
}

interface InSetup {
  admittedAt: number;
  socket: Socket;
  onClose: () => void;
}

/**
 * Admission control for the agents' port. Without it, every connection of a reconnecting fleet was
 * accepted at once and all their TLS handshakes, HTTP/2 sessions and first calls advanced together
 * on the one event loop: each took as long as all of them, agents timed out on connections already
 * half set up and dialled again, and at 18,000 agents only a fifth were back after a minute
 * (docs/BENCHMARKS.md, "Scale"). The gate sets up at most `inSetup` connections at a time, keeps
 * the rest accepted but unread (net.Server pauseOnConnect) in arrival order, and refuses (TCP
 * reset) those that waited longer than `waitMs` or found the queue full: the agent's call fails at
 * once and it retries after its backoff (agent/lifecycle/backoff.ts), which spreads the fleet over
 * the time the appliance needs. A connection's slot is freed by its first call (the gRPC
 * interceptor `settleOnFirstCall`), its close, or after `slotMs`.
 *
 * This is the "shed" of issue 14's reconnect storm ("a listen backlog that holds … or shed"):
 * load shedding by concurrency, as Go's netutil.LimitListener bounds a server's connections and
 * Envoy's overload manager refuses new ones when a resource runs short.
 */
export class ConnectionGate {
  readonly #setUp: (socket: Socket) => void;
  readonly #log: Logger;
  readonly #limits: ConnectionGateLimits;
  /** Connections in setup by peer address (`address:port`, as grpc-js getPeer() writes it), in admission order. */
  readonly #inSetup = new Map<string, InSetup>();
  readonly #waiting: Waiting[] = [];
  /** The first entry of #waiting still waiting (entries before it were admitted or refused). */
  #head = 0;
  #timer: NodeJS.Timeout | undefined;
  #nextTurn: NodeJS.Immediate | undefined;
  #admittedThisTurn = 0;
  #shedSinceLog = 0;
  readonly #logTimer: NodeJS.Timeout;

  /** `setUp` hands an admitted socket to the server (grpc-js's connection injector). */
  constructor(setUp: (socket: Socket) => void, log: Logger, limits: ConnectionGateLimits = { inSetup: CONNECTIONS_IN_SETUP, slotMs: SETUP_SLOT_MS, waitMs: ADMISSION_WAIT_MS, queue: ADMISSION_QUEUE }) {
    this.#setUp = setUp;
    this.#log = log;
    this.#limits = limits;
    this.#logTimer = setInterval(() => this.#logShed(), SHED_LOG_INTERVAL_MS);
    this.#logTimer.unref();
  }

  /** A connection was accepted (paused): set up now, queued for a slot, or refused when the queue is full. */
  offer(socket: Socket): void {
    const now = performance.now();
    this.#pump(now);
    if (this.#head === this.#waiting.length && this.#inSetup.size < this.#limits.inSetup && this.#admittedThisTurn < ADMITS_PER_TURN) return this.#admit(socket, now);
    if (this.#waiting.length - this.#head >= this.#limits.queue) return this.#shed(socket);
    this.#waiting.push({ socket, since: now });
    this.#schedule();
  }

  /** The connection of `peer` (grpc-js getPeer()) made its first call: its slot goes to the next one waiting. */
  settled(peer: string): void {
    if (this.#release(peer)) this.#pump(performance.now());
  }

  /** Connections in setup and waiting now (the refusal log line, tests). */
  get counts(): { inSetup: number; waiting: number } {
    return { inSetup: this.#inSetup.size, waiting: this.#waiting.length - this.#head };
  }

  /** Refuses every connection still waiting and stops the timers (the server stops). */
  close(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#nextTurn);
    clearInterval(this.#logTimer);
    for (let index = this.#head; index < this.#waiting.length; index += 1) this.#waiting[index]!.socket.destroy();
    this.#waiting.length = this.#head = 0;
    this.#logShed();
  }

  /** Frees the slots past `slotMs`, refuses the connections past `waitMs`, and admits waiting ones into free slots. */
  #pump(now: number): void {
    const { slotMs, waitMs, inSetup } = this.#limits;
    // Admission order is expiry order: stop at the first slot still young.
    for (const [peer, { admittedAt }] of this.#inSetup) {
      if (now - admittedAt < slotMs) break;
      this.#release(peer);
    }
    const waiting = this.#waiting;
    while (this.#head < waiting.length && now - waiting[this.#head]!.since >= waitMs) this.#shed(waiting[this.#head++]!.socket);
    while (this.#head < waiting.length && this.#inSetup.size < inSetup && this.#admittedThisTurn < ADMITS_PER_TURN) {
      const { socket } = waiting[this.#head++]!;
      // A peer may have reset while it waited.
      if (!socket.destroyed) this.#admit(socket, now);
    }
    if (this.#head === waiting.length) {
      waiting.length = this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= waiting.length) {
      waiting.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #admit(socket: Socket, now: number): void {
    // The turn's budget (ADMITS_PER_TURN) starts again in the next turn, which admits more of those waiting.
    if (this.#admittedThisTurn++ === 0) {
      this.#nextTurn = setImmediate(() => {
        this.#admittedThisTurn = 0;
        this.#pump(performance.now());
      });
    }
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#release(peer);
    const onClose = (): void => {
      if (this.#release(peer)) this.#pump(performance.now());
    };
    socket.once('close', onClose);
    this.#inSetup.set(peer, { admittedAt: now, socket, onClose });
    this.#setUp(socket);
  }

  /** Frees the slot of `peer`, and forgets its socket (an open connection keeps no listener of ours). False when it held none. */
  #release(peer: string): boolean {
    const entry = this.#inSetup.get(peer);
    if (entry === undefined) return false;
    entry.socket.off('close', entry.onClose);
    return this.#inSetup.delete(peer);
  }

  /** Refused with a TCP reset: the agent's connection attempt fails at once, and it backs off. */
  #shed(socket: Socket): void {
    this.#shedSinceLog += 1;
    socket.resetAndDestroy();
  }

  /** While connections wait, wakes at the next moment a slot expires or a wait runs out. */
  #schedule(): void {
    if (this.#timer !== undefined || this.#head === this.#waiting.length) return;
    const now = performance.now();
    const oldestSlot = this.#inSetup.values().next().value;
    const slotFree = oldestSlot === undefined ? now : oldestSlot.admittedAt + this.#limits.slotMs;
    const waitOver = this.#waiting[this.#head]!.since + this.#limits.waitMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump(performance.now());
      this.#schedule();
    }, Math.max(1, Math.ceil(Math.min(slotFree, waitOver) - now)));
  }

  #logShed(): void {
    if (this.#shedSinceLog === 0) return;
    const { inSetup, waiting } = this.counts;
    this.#log.warn({ refused: this.#shedSinceLog, in_setup: inSetup, waiting, wait_ms: this.#limits.waitMs }, 'agent connections refused: the appliance was setting up as many as it can; the agents retry after their backoff');
    this.#shedSinceLog = 0;
  }
}

/**
 * The server interceptor that frees a connection's setup slot at its first call (every call
 * passes; it adds no layer to the call).
 */
export function settleOnFirstCall(gate: ConnectionGate): grpc.ServerInterceptor {
  return (_method, call) => {
    gate.settled(call.getPeer());
    // Passed on as it is: grpc-js chains interceptors' results only through the interface
    // (getServerInterceptingCall reduces over them); the type names the class, and a wrapper would
    // cost an object on every call an agent keeps open.
    return call as grpc.ServerInterceptingCall;
  };
}
