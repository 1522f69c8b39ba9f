import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { join } from 'node:path';
import { CA_CERT_FILE, ENDPOINT_FILE } from '../../appliance/lib/data-dir-files.ts';
import { readTrustedCaPems } from '../../appliance/lib/trusted-cas.ts';
import { CtOpsError } from '../../common/errors.ts';

/** The appliance a load run drives, as its data directory describes it. */
export interface Target {
  /** host:port of the gRPC ingest listener. */
  readonly ingestAddress: string;
  /** PEM of every CA an agent trusts now (ca.crt, and ca-next.crt during a CA rotation). */
  readonly caPem: string;
  /** The appliance's process, for its CPU and memory over the run; undefined when not known. */
  readonly appliancePid: number | undefined;
}

/**
 * Reads what a bundle would give an agent from a running appliance's data directory: the CA and the
 * ingest address (from appliance.json, written once the listeners are up: { admin_api, grpc_port, pid }).
 * `address` (host:port) overrides the ingest address, `appliancePid` the pid.
 * Throws ERR_APPLIANCE_UNREACHABLE when the directory holds no started appliance's files.
 */
export function readTarget(dataDir: string, overrides: { address?: string; appliancePid?: number }): Target {
  const read = <T>(name: string, reader: (path: string) => T): T => {
    try {
      return reader(join(dataDir, name));
    } catch (cause) {
      throw new CtOpsError('ERR_APPLIANCE_UNREACHABLE', `cannot read ${join(dataDir, name)}: is --data-dir a running appliance's data directory?`, { path: join(dataDir, name) }, { cause });
    }
  };
  const endpoint = read(ENDPOINT_FILE, (path) => JSON.parse(readFileSync(path, 'utf8')) as { admin_api: string; grpc_port: number; pid?: number });
  // The endpoint file names the admin API by a loopback address when the appliance listens on all addresses; the ingest listener shares its host.
  const host = new URL(endpoint.admin_api).hostname;
  return {
    ingestAddress: overrides.address ?? `${host}:${endpoint.grpc_port}`,
    caPem: read(CA_CERT_FILE, () => readTrustedCaPems(dataDir)),
    appliancePid: overrides.appliancePid ?? endpoint.pid,
  };
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * Refuses (ERR_USAGE) an ingest address whose host is not loopback (127.0.0.0/8, ::1) nor one of
 * `allowed` (addresses of network namespaces on this machine): the generator opens up to 60,000
 * connections and must never be pointed at a network. A name counts only when every address it
 * resolves to is loopback or allowed.
 */
export async function assertLocalAddress(address: string, allowed: readonly string[]): Promise<void> {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):\d{1,5}$/.exec(address);
  const host = match?.[1] ?? match?.[2];
  if (host === undefined) throw new CtOpsError('ERR_USAGE', `${address} is not host:port (an IPv6 address in brackets: [::1]:9443)`);
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : (await lookup(host, { all: true })).map((entry) => entry.address);
  } catch (cause) {
    throw new CtOpsError('ERR_USAGE', `cannot resolve ${host}: ${(cause as Error).message}`, {}, { cause });
  }
  const refused = addresses.filter((ip) => !allowed.includes(ip) && !LOOPBACK.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4'));
  if (addresses.length === 0 || refused.length > 0) {
    throw new CtOpsError('ERR_USAGE', `${address} is not a loopback address (it resolves to ${refused.join(', ') || 'nothing'}); the load generator drives only this machine: name a network namespace's address with --allow-address`);
  }
}
