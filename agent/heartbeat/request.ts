import type { HeartbeatRequest, HostFacts, UpdateStatus } from '../../common/proto.ts';
import type { Vitals } from '../vitals/sample.ts';
import type { TaskUpdate } from './task-updates.ts';

export interface HeartbeatFields {
  readonly agentId: string;
  readonly sequence: number;
  readonly intervalSecs: number;
  readonly agentVersion: string;
  readonly nowMs: number;
  readonly vitals: Vitals;
  readonly taskUpdates: readonly TaskUpdate[];
  /** Set on a stream's first heartbeat and when a fact changed. */
  readonly facts?: HostFacts | undefined;
  /** The generation of the trust bundle the agent holds (agent/identity/trust.ts); 0 for none. */
  readonly trustGeneration?: number;
  /** SHA-256 of that bundle's signed payload (AgentTrust.digest); empty for none. */
  readonly trustDigest?: Uint8Array;
  /** The self-update status to report on this heartbeat, if any. */
  readonly updateStatus?: UpdateStatus | undefined;
}

export function buildHeartbeat(fields: HeartbeatFields): HeartbeatRequest {
  return {
    agent_id: fields.agentId,
    cpu_percent: fields.vitals.cpuPercent,
    memory_percent: fields.vitals.memoryPercent,
    disk_percent: fields.vitals.diskPercent,
    uptime_seconds: fields.vitals.uptimeSeconds,
    timestamp_unix: Math.floor(fields.nowMs / 1000),
    timestamp_unix_ms: Math.floor(fields.nowMs),
    sequence: fields.sequence,
    interval_secs: fields.intervalSecs,
    agent_version: fields.agentVersion,
    task_updates: [...fields.taskUpdates],
    trust_generation: fields.trustGeneration ?? 0,
    trust_digest: fields.trustDigest ?? new Uint8Array(0),
    ...(fields.facts ? { host_facts: fields.facts } : {}),
    ...(fields.updateStatus ? { update_status: fields.updateStatus } : {}),
  };
}
