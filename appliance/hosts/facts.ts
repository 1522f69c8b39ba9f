import { checkAgentText } from '../../common/agent-text.ts';
import { CtOpsError } from '../../common/errors.ts';
import type { HostFacts__Output } from '../../common/proto.ts';
import type { HostFactsUpdate } from '../store/index.ts';

/** HostFacts that passed validation: the descriptive facts plus who claims the key. */
export interface HostFacts extends HostFactsUpdate {
  machineFingerprint: string;
  instanceId: string;
}

const PRINTABLE = /^[\p{L}\p{N}\p{P}\p{S} ]+$/u;
/** The most addresses stored per host: enough for real machines, bounded for hostile ones. */
export const MAX_IP_ADDRESSES = 16;
const IP_ADDRESS = /^[0-9A-Fa-f.:]{2,45}(%[A-Za-z0-9_.-]{1,32})?$/;

/**
 * Validates HostFacts (HeartbeatRequest.host_facts) with the same bounds as Register's fields;
 * throws ERR_INVALID_ARGUMENT naming the field.
 */
export function parseHostFacts(message: HostFacts__Output): HostFacts {
  const text = (value: string, field: string, max: number, pattern?: RegExp, required = true): string =>
    checkAgentText(value, `HostFacts.${field}`, { max, required, pattern }, { field: `host_facts.${field}` });
  if (message.ip_addresses.length > MAX_IP_ADDRESSES) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', `HostFacts.ip_addresses has more than ${MAX_IP_ADDRESSES} entries`, { field: 'host_facts.ip_addresses' });
  }
  return {
    hostname: text(message.hostname, 'hostname', 253, PRINTABLE),
    machineFingerprint: text(message.machine_fingerprint, 'machine_fingerprint', 64, /^[0-9a-f]{64}$/),
    os: text(message.os, 'os', 32, /^[a-z0-9_-]+$/),
    osVersion: text(message.os_version, 'os_version', 128, PRINTABLE, false),
    arch: text(message.arch, 'arch', 32, /^[a-z0-9_-]+$/),
    agentVersion: text(message.agent_version, 'agent_version', 64, PRINTABLE),
    ipAddresses: message.ip_addresses.map((address) => text(address, 'ip_addresses', 80, IP_ADDRESS)),
    instanceId: text(message.instance_id, 'instance_id', 16, /^[0-9a-f]{16}$/),
  };
}
