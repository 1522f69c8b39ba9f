import { isIP } from 'node:net';
import { CtOpsError } from '../../common/errors.ts';

export interface IngestAddress {
  /** The address as configured, used as the gRPC target. */
  readonly target: string;
  /** Host name or IP literal (without IPv6 brackets), checked against the certificate. */
  readonly host: string;
  readonly port: number;
}

/** Parses "host:port" or "[ipv6]:port"; a missing or out-of-range port is a config error. */
export function parseIngestAddress(text: string, where: string): IngestAddress {
  const trimmed = text.trim();
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(trimmed);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || !host) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: expected host:port (e.g. ingest.example.com:9443), got ${JSON.stringify(text)}`, { where });
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: port must be from 1 to 65535, got ${JSON.stringify(text)}`, { where });
  }
  if (match[1] !== undefined && isIP(host) !== 6) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: ${JSON.stringify(host)} in brackets is not an IPv6 address`, { where });
  }
  return Object.freeze({ target: trimmed, host, port });
}
