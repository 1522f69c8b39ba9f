import { isIPv4, isIPv6 } from 'node:net';

const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/**
 * The source a per-peer limit or the refusal log counts for a gRPC peer as grpc-js names it
 * (`remoteAddress:remotePort`, e.g. "127.0.0.1:5678", "::1:5678", "[::1]:5678",
 * "::ffff:10.0.0.1:5678"): an IPv4 address, or an IPv6 /64 written "2001:db8:0:1::/64" — one
 * site usually holds a whole /64, so counting single IPv6 addresses would let it rotate through
 * them freely. The port is dropped, so a reconnecting peer stays one source. Anything else
 * (a Unix socket, "unknown") is returned as it is.
 */
export function peerSource(peer: string): string {
  const address = peer.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped) return mapped[1] as string;
  if (isIPv4(address)) return address;
  if (isIPv6(address)) return `${ipv6Groups(address).slice(0, 4).join(':')}::/64`;
  return peer;
}

/** The eight 16-bit groups of an IPv6 address, as lower-case hex without leading zeros. */
function ipv6Groups(address: string): string[] {
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = Array.from({ length: 8 - left.length - right.length }, () => '0');
  return [...left, ...zeros, ...right].map((group) => Number.parseInt(group, 16).toString(16));
}
