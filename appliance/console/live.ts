import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';

/** How often the fleet's change mark is read while at least one console listens. */
export const FLEET_POLL_MS = 2_000;
/** A comment line this often keeps proxies and the browser from timing an idle stream out. */
const KEEPALIVE_MS = 15_000;
/** Live streams held at once, in all and per session: a console tab holds one; more are refused (ERR_CONSOLE_BUSY). */
export const MAX_STREAMS = 100;
export const MAX_STREAMS_PER_SESSION = 8;

/** How often the sessions behind open streams are checked: a session that ended ends its streams. */
const SESSION_CHECK_MS = 10_000;

/** What the streams are computed from: change marks (HostService.changeMark and hostChangeMark) and the sessions still live. */
export interface LiveSources {
  /** Changes when what an admin sees of the fleet may have. */
  fleet(): Promise<string>;
  /** Changes when what the host page of `hostId` shows may have (a heartbeat, a task's step, a scan). */
  host(hostId: string): Promise<string>;
  /** Of `sessionIds`, those still live (not logged out, expired, idle, or of a disabled account). */
  liveSessions(sessionIds: readonly string[]): Promise<ReadonlySet<string>>;
}

/** One open stream: whose session, and the host whose page it serves (none on other pages). */
interface Listener {
  readonly sessionId: string;
  readonly hostId: string | undefined;
}

/**
 * Tells open consoles when the fleet, or the host a page shows, changed, by Server-Sent Events
 * (WHATWG HTML §9.2): `event: fleet` and `event: host`. Change is found by reading change marks
 * (HostStore.changeMark: counts and newest times; per host: its row, its tasks' steps and its scans),
 * read from the database so they see every ingest instance's hosts too, every FLEET_POLL_MS while
 * anyone listens — one read per host page open, none when no one listens. An event carries no data:
 * the page fetches what it shows again through the same routes, under the same session checks.
 */
export class FleetEvents {
  readonly #sources: LiveSources;
  readonly #log: Logger;
  readonly #streams = new Map<PassThrough, Listener>();
  #timer: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #mark: string | undefined;
  /** The last mark read of each host a stream follows. */
  readonly #hostMarks = new Map<string, string>();
  /** When the sessions behind the streams were last checked (ms). */
  #sessionsCheckedAt = 0;
  #reading = false;

  constructor(sources: LiveSources, log: Logger) {
    this.#sources = sources;
    this.#log = log;
  }

  /**
   * Opens a stream for session `sessionId` (following host `hostId` too, on a host page) and sends it
   * on `reply`; it ends when the browser goes or close() runs. Errors: ERR_CONSOLE_BUSY past
   * MAX_STREAMS or MAX_STREAMS_PER_SESSION.
   */
  async open(reply: FastifyReply, sessionId: string, hostId?: string): Promise<FastifyReply> {
    const ofSession = [...this.#streams.values()].filter((listener) => listener.sessionId === sessionId).length;
    if (this.#streams.size >= MAX_STREAMS || ofSession >= MAX_STREAMS_PER_SESSION) {
      throw new CtOpsError('ERR_CONSOLE_BUSY', 'too many live console streams are open: close another console tab', { limit: ofSession >= MAX_STREAMS_PER_SESSION ? MAX_STREAMS_PER_SESSION : MAX_STREAMS });
    }
    const stream = new PassThrough();
    this.#streams.set(stream, { sessionId, hostId });
    reply.raw.once('close', () => this.#drop(stream));
    if (hostId !== undefined && !this.#hostMarks.has(hostId)) {
      // Its mark before the page is told to fetch, as below for the fleet's.
      await this.#readHostMark(hostId);
    }
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => void this.#poll(), FLEET_POLL_MS);
      this.#keepalive = setInterval(() => this.#broadcast(': keepalive\n\n'), KEEPALIVE_MS);
      // The mark to compare with is read before the page is told to fetch: a change after this read is seen by the next poll.
      await this.#poll();
    }
    // retry: the browser waits this long before reconnecting after the stream ends (a restart, close()).
    // The first event makes the page fetch what it shows once more: a change between the page's render
    // and this stream's start is not lost.
    stream.write('retry: 3000\n\nevent: fleet\ndata: {}\n\n');
    return reply.header('content-type', 'text/event-stream; charset=utf-8').header('x-accel-buffering', 'no').send(stream);
  }

  /** Ends every stream (the server is stopping: an open stream would hold its close forever). */
  close(): void {
    for (const stream of [...this.#streams.keys()]) {
      stream.end();
      this.#drop(stream);
    }
  }

  /** Ends the streams of one session (logout, or it ended by itself). */
  closeSession(sessionId: string): void {
    for (const [stream, listener] of [...this.#streams]) {
      if (listener.sessionId !== sessionId) continue;
      stream.end();
      this.#drop(stream);
    }
  }

  #drop(stream: PassThrough): void {
    const hostId = this.#streams.get(stream)?.hostId;
    this.#streams.delete(stream);
    if (hostId !== undefined && ![...this.#streams.values()].some((listener) => listener.hostId === hostId)) this.#hostMarks.delete(hostId);
    if (this.#streams.size > 0) return;
    clearInterval(this.#timer);
    clearInterval(this.#keepalive);
    this.#timer = undefined;
    this.#keepalive = undefined;
    this.#mark = undefined;
  }

  async #poll(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      const mark = await this.#sources.fleet();
      if (this.#mark !== undefined && mark !== this.#mark) this.#broadcast('event: fleet\ndata: {}\n\n');
      this.#mark = mark;
      for (const hostId of [...this.#hostMarks.keys()]) {
        const before = this.#hostMarks.get(hostId);
        const now = await this.#readHostMark(hostId);
        if (now !== before) this.#broadcast('event: host\ndata: {}\n\n', hostId);
      }
      if (Date.now() - this.#sessionsCheckedAt >= SESSION_CHECK_MS) await this.#endStreamsOfEndedSessions();
    } catch (error) {
      this.#log.warn({ err: error }, 'console live updates could not read the fleet; retrying');
    } finally {
      this.#reading = false;
    }
  }

  /**
   * Ends the streams of sessions that ended since they opened (idle or absolute timeout, a password
   * change or an account disabled elsewhere): the page's reconnect is refused and it leaves for the
   * login page, instead of going on showing the fleet to a session that no longer exists.
   */
  async #endStreamsOfEndedSessions(): Promise<void> {
    this.#sessionsCheckedAt = Date.now();
    const sessionIds = [...new Set([...this.#streams.values()].map((listener) => listener.sessionId))];
    if (sessionIds.length === 0) return;
    const live = await this.#sources.liveSessions(sessionIds);
    for (const sessionId of sessionIds) if (!live.has(sessionId)) this.closeSession(sessionId);
  }

  /** Reads and keeps the mark of `hostId` while a stream still follows it (one may have gone during the read). */
  async #readHostMark(hostId: string): Promise<string> {
    const mark = await this.#sources.host(hostId);
    if ([...this.#streams.values()].some((listener) => listener.hostId === hostId)) this.#hostMarks.set(hostId, mark);
    return mark;
  }

  /** Writes `text` to every stream, or to those following `hostId`. */
  #broadcast(text: string, hostId?: string): void {
    for (const [stream, listener] of this.#streams) {
      if (hostId !== undefined && listener.hostId !== hostId) continue;
      // A browser that stopped reading does not grow our memory: its stream is ended instead.
      if (!stream.write(text) && stream.writableLength > 64 * 1024) stream.destroy();
    }
  }
}

/** Registers close() on the server's preClose: fastify's close waits for open responses. */
export function endStreamsOnClose(app: FastifyInstance, events: FleetEvents): void {
  app.addHook('preClose', async () => events.close());
}
