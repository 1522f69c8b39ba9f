import { checkAgentText, cleanAgentText } from '../../common/agent-text.ts';
import { MAX_HOST_IP_ADDRESSES } from '../../common/heartbeat-limits.ts';
import type { HostFacts__Output } from '../../common/proto.ts';
import type { HostFactsUpdate } from '../store/index.ts';

/** HostFacts that passed validation: the descriptive facts plus who claims the key. */
export interface HostFacts extends HostFactsUpdate {
  machineFingerprint: string;
  instanceId: string;
}

const IP_ADDRESS = /^[0-9A-Fa-f.:]{2,45}(%[A-Za-z0-9_.-]{1,32})?$/;
const OS_OR_ARCH = /^[a-z0-9_-]{1,32}$/;
/** Shown for a hostname the machine reports empty (sethostname accepts ""). */
export const NO_HOSTNAME = '(no hostname)';

/**
 * Reads HostFacts (HeartbeatRequest.host_facts). Strict only where the identity judgement depends
 * on the value: machine_fingerprint and instance_id must have their exact shapes, else
 * ERR_INVALID_ARGUMENT naming the field. The descriptive facts are whatever the machine is
 * configured with (a hostname with an escape, combining marks or nothing at all is accepted by
 * sethostname), so they are made displayable rather than refused, and never end the stream:
 * cleanAgentText for text, 'unknown' for an os or arch outside [a-z0-9_-], addresses of another
 * shape left out and at most MAX_HOST_IP_ADDRESSES kept.
 */
export function parseHostFacts(message: HostFacts__Output): HostFacts {
  const strict = (value: string, field: string, max: number, pattern: RegExp): string =>
    checkAgentText(value, `HostFacts.${field}`, { max, required: true, pattern }, { field: `host_facts.${field}` });
  const name = (value: string): string => (OS_OR_ARCH.test(value) ? value : 'unknown');
  return {
    hostname: cleanAgentText(message.hostname, 253, NO_HOSTNAME),
    machineFingerprint: strict(message.machine_fingerprint, 'machine_fingerprint', 64, /^[0-9a-f]{64}$/),
    os: name(message.os),
    osVersion: cleanAgentText(message.os_version, 128, ''),
    arch: name(message.arch),
    agentVersion: cleanAgentText(message.agent_version, 64, 'unknown'),
    ipAddresses: message.ip_addresses.filter((address) => IP_ADDRESS.test(address)).slice(0, MAX_HOST_IP_ADDRESSES),
    instanceId: strict(message.instance_id, 'instance_id', 16, /^[0-9a-f]{16}$/),
  };
}
