import type { Logger } from 'pino';
import { HEARTBEAT_RATE_LIMIT } from '../../common/heartbeat-limits.ts';
import { RegisterThrottle } from '../enrolment/register-throttle.ts';
import { HostMessageRate } from '../heartbeat/message-rate.ts';
import { RefusalLog } from '../lib/refusal-log.ts';

/** What bounds the work one peer can cause: the ingest handlers share one per server. */
export interface IngestGuards {
  /** Refusals of peer input, logged aggregated. */
  readonly refusals: RefusalLog;
  /** Heartbeat messages and stream opens, per host across all its streams. */
  readonly heartbeatRate: HostMessageRate;
  /** Failed Registers per source: counted by the handler and by the strict deserializer's refusals. */
  readonly registerThrottle: RegisterThrottle;
}

export function createIngestGuards(log: Logger): IngestGuards {
  return { refusals: new RefusalLog(log), heartbeatRate: new HostMessageRate(HEARTBEAT_RATE_LIMIT), registerThrottle: new RegisterThrottle() };
}
