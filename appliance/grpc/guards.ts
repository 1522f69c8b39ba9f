import type { Logger } from 'pino';
import { HEARTBEAT_RATE_LIMIT } from '../../common/heartbeat-limits.ts';
import { RegisterThrottle } from '../enrolment/register-throttle.ts';
import { HostMessageRate } from '../heartbeat/message-rate.ts';
import { HostOpenCalls } from '../heartbeat/open-calls.ts';
import { RefusalLog } from '../lib/refusal-log.ts';

/**
 * Heartbeat calls one host may have open at once: its agent's stream, a report-only stream (the
 * uninstaller's) and the overlap while a new stream replaces one that is still ending.
 */
export const HEARTBEAT_OPEN_CALLS_PER_HOST = 3;
/** The retry hint (ms) given to a host refused for too many open calls: longer than a replaced stream takes to end. */
const OPEN_CALLS_RETRY_AFTER_MS = 10_000;

/** What bounds the work one peer can cause: the ingest handlers share one per server. */
export interface IngestGuards {
  /** Refusals of peer input, logged aggregated. */
  readonly refusals: RefusalLog;
  /** Heartbeat messages, Heartbeat stream opens and inventory stream opens, per host across all its streams. */
  readonly heartbeatRate: HostMessageRate;
  /** Failed Registers per source: counted by the handler and by the strict deserializer's refusals. */
  readonly registerThrottle: RegisterThrottle;
  /** Heartbeat calls per host that have not ended (a call we closed may stay open while its peer does not read). */
  readonly openHeartbeatCalls: HostOpenCalls;
}

export function createIngestGuards(log: Logger): IngestGuards {
  return {
    refusals: new RefusalLog(log),
    heartbeatRate: new HostMessageRate(HEARTBEAT_RATE_LIMIT),
    registerThrottle: new RegisterThrottle(),
    openHeartbeatCalls: new HostOpenCalls(HEARTBEAT_OPEN_CALLS_PER_HOST, OPEN_CALLS_RETRY_AFTER_MS),
  };
}
