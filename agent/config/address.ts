import { isIP } from 'node:net';
import { CtOpsError } from '../../common/errors.ts';
import { parseHostName, unicodeHostName } from '../../common/host-name.ts';

export interface IngestAddress {
  /** "host:port" with the host in its ASCII (IDNA) form, used as the gRPC target. */
  readonly target: string;
  /** ASCII host name or IP literal (without IPv6 brackets), checked against the certificate. */
  readonly host: string;
  readonly port: number;
  /** The target for people: "bücher.example:9443 (xn--bcher-kva.example:9443)" for an IDNA name, else the target. */
  readonly display: string;
}

/**
 * Parses "host:port" or "[ipv6]:port"; a missing or out-of-range port, or a host name
 * common/host-name.ts cannot convert to ASCII, is a config error (ERR_CONFIG_INVALID).
 */
export function parseIngestAddress(text: string, where: string): IngestAddress {
  const trimmed = text.trim();
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(trimmed);
  const given = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || !given) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: expected host:port (e.g. ingest.example.com:9443), got ${JSON.stringify(text)}`, { where });
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: port must be from 1 to 65535, got ${JSON.stringify(text)}`, { where });
  }
  if (match[1] !== undefined && isIP(given) !== 6) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: ${JSON.stringify(given)} in brackets is not an IPv6 address`, { where });
  }
  const host = parseHostName(given, where).ascii;
  const withPort = (name: string) => (isIP(name) === 6 ? `[${name}]:${port}` : `${name}:${port}`);
  const target = withPort(host);
  const unicode = unicodeHostName(host);
  return Object.freeze({ target, host, port, display: unicode === host ? target : `${withPort(unicode)} (${target})` });
}
