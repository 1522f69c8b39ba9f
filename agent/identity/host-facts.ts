import { randomBytes } from 'node:crypto';
import { hostname, networkInterfaces, release } from 'node:os';
import { MAX_HOST_IP_ADDRESSES } from '../../common/heartbeat-limits.ts';
import type { HostFacts } from '../../common/proto.ts';
import type { HostDescription } from '../registration/request.ts';

/**
 * A random id for this agent process (16 hex digits). A restart gets a new one; two processes
 * sharing one identity (a cloned VM keeps machine id, hostname and data directory) differ in it,
 * which is how the appliance tells them apart.
 */
export function newInstanceId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * The host's facts as they are now: hostname, OS release and addresses are read again on every
 * call (a rename or a new address shows without a restart); the rest is fixed for the process.
 * Cheap enough for every heartbeat: uname and getifaddrs, no files.
 */
export function readHostFacts(host: HostDescription, instanceId: string): HostFacts {
  return {
    hostname: hostname(),
    machine_fingerprint: host.machineFingerprint,
    os: host.os,
    os_version: release(),
    arch: host.arch,
    agent_version: host.agentVersion,
    ip_addresses: interfaceAddresses(),
    instance_id: instanceId,
  };
}

/** The host's non-loopback addresses; none when they cannot be read (os.networkInterfaces throws on a getifaddrs failure). */
function interfaceAddresses(): string[] {
  let interfaces: ReturnType<typeof networkInterfaces>;
  try {
    interfaces = networkInterfaces();
  } catch {
    return [];
  }
  const addresses = Object.values(interfaces)
    .flatMap((entries) => entries ?? [])
    .filter((entry) => !entry.internal)
    .map((entry) => entry.address);
  return [...new Set(addresses)].sort().slice(0, MAX_HOST_IP_ADDRESSES);
}
