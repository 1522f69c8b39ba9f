import pg from 'pg';
import { CLUSTER_CHANNEL } from './appliance-instances.ts';
import { POSTGRES_CONNECT_TIMEOUT_MS } from './postgres-dialect.ts';

/** The first wait before connecting again after the listening connection was lost, in ms; doubled per failure up to the most. */
const RELISTEN_FIRST_DELAY_MS = 500;
const RELISTEN_MAX_DELAY_MS = 15_000;

export interface ClusterListenerEvents {
  /** A payload NOTIFYed on CLUSTER_CHANNEL by any instance (this one included). */
  onPayload(payload: string): void;
  /**
   * Listening (again): payloads NOTIFYed while it was not were lost, so whatever they may have
   * carried must be looked up again (cluster/service.ts resync). `first` on the first connect.
   */
  onListening(first: boolean): void;
  /** The listening connection failed or could not be made; it is tried again after `retryInMs`. */
  onLost(error: Error, retryInMs: number): void;
}

/**
 * LISTEN on CLUSTER_CHANNEL over one dedicated PostgreSQL connection (not a pooled one: a pooled
 * connection is handed to other queries and LISTEN is per session), made again with backoff
 * whenever it is lost. `url` as for postgresKysely; never logged (its password).
 */
/** The listening connection's application_name: what pg_stat_activity shows for it (its last query is the periodic `SELECT 1`). */
export const LISTENER_APPLICATION_NAME = 'ct-ops cluster listener';

export class ClusterListener {
  readonly #url: string;
  readonly #events: ClusterListenerEvents;
  #client: pg.Client | undefined;
  #retry: NodeJS.Timeout | undefined;
  #delayMs = RELISTEN_FIRST_DELAY_MS;
  #listenedBefore = false;
  #stopped = false;

  constructor(url: string, events: ClusterListenerEvents) {
    this.#url = url;
    this.#events = events;
  }

  /** Resolves once listening, rejects with the first connection's failure (the caller decides whether to start without). */
  async start(): Promise<void> {
    await this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    // TCP keep-alive from 10 s of idleness; `check` finds a connection gone silent sooner.
    const client = new pg.Client({ connectionString: this.#url, application_name: LISTENER_APPLICATION_NAME, connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    const lost = (error: Error): void => this.#lost(client, error);
    client.on('error', lost);
    client.on('end', () => lost(new Error('the listening connection ended')));
    client.on('notification', (message) => {
      if (message.channel === CLUSTER_CHANNEL && message.payload !== undefined) this.#events.onPayload(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CLUSTER_CHANNEL}`);
    } catch (error) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.#stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#delayMs = RELISTEN_FIRST_DELAY_MS;
    const first = !this.#listenedBefore;
    this.#listenedBefore = true;
    this.#events.onListening(first);
  }

  /**
   * Asks the listening connection a trivial query: one that fails or does not answer within
   * `timeoutMs` (a connection gone silent: no FIN, no RST) counts as lost — closed, connected again
   * with backoff, and onListening says so. Never rejects.
   */
  check(timeoutMs: number): void {
    const client = this.#client;
    if (client === undefined) return;
    const timer = setTimeout(() => this.#lost(client, new Error(`the listening connection did not answer within ${timeoutMs} ms`)), timeoutMs);
    client.query('SELECT 1').then(
      () => clearTimeout(timer),
      (error: unknown) => {
        clearTimeout(timer);
        this.#lost(client, error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  #lost(client: pg.Client, error: Error): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.end().catch(() => undefined);
    this.#scheduleRetry(error);
  }

  #scheduleRetry(error: Error): void {
    if (this.#stopped) return;
    const delay = this.#delayMs;
    this.#delayMs = Math.min(this.#delayMs * 2, RELISTEN_MAX_DELAY_MS);
    this.#events.onLost(error, delay);
    this.#retry = setTimeout(() => {
      this.#connect().catch((failure: unknown) => this.#scheduleRetry(failure instanceof Error ? failure : new Error(String(failure))));
    }, delay);
  }
}
