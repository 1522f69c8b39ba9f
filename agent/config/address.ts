import { describeHostName, hostWithPort, inputError, parseHostName, type HostName, type HostNameErrorCode } from '../../common/host-name.ts';

/** At most this many ingest addresses: an agent tries them in turn, so a long list only delays its return. */
export const MAX_INGEST_ADDRESSES = 16;

export interface IngestAddress {
  /** "host:port" with the host in its ASCII (IDNA) form (IPv6 canonical, in brackets), used as the gRPC target. */
  readonly target: string;
  /** ASCII host name or IP literal (without IPv6 brackets), checked against the certificate. */
  readonly host: string;
  readonly port: number;
  /** The host as converted: its Unicode form, and the name as given when it reads as another name. */
  readonly name: HostName;
  /** "bücher.example:9443" for an IDNA name (logged as address_unicode beside the ASCII target); the target otherwise. */
  readonly unicodeTarget: string;
  /** The address for people: describeHostName(name, port). */
  readonly display: string;
}

/**
 * Parses "host:port" or "[ipv6]:port". A missing or out-of-range port, or a host
 * common/host-name.ts refuses, is an error with `code` (default ERR_CONFIG_INVALID,
 * details { where }; the bundler passes ERR_INVALID_ARGUMENT, details { field }).
 */
export function parseIngestAddress(text: string, where: string, code: HostNameErrorCode = 'ERR_CONFIG_INVALID'): IngestAddress {
  const trimmed = text.trim();
  // The host is anything up to the last ":" (brackets for IPv6): parseHostName says what is wrong with it.
  const match = /^(?:(\[[^\]]*\])|([^:[\]]+)):(\d{1,5})$/.exec(trimmed);
  const given = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || !given) throw inputError(code, where, `expected host:port (e.g. ingest.example.com:9443), got ${JSON.stringify(text)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw inputError(code, where, `port must be from 1 to 65535, got ${JSON.stringify(text)}`);
  const name = parseHostName(given, where, code);
  return Object.freeze({
    target: hostWithPort(name.ascii, port),
    host: name.ascii,
    port,
    name,
    unicodeTarget: hostWithPort(name.unicode, port),
    display: describeHostName(name, port),
  });
}

/**
 * An ordered list of ingest addresses as agents take it: 1 to MAX_INGEST_ADDRESSES entries, each
 * parsed by parseIngestAddress, no target twice. Each entry names where its text came from (its
 * error says so); `listWhere` names the list for a wrong count. Throws `code`: ERR_CONFIG_INVALID for
 * agent.toml, ERR_INVALID_ARGUMENT for a bundle request.
 */
export function parseIngestAddressList(entries: readonly { text: string; where: string }[], listWhere: string, code: HostNameErrorCode = 'ERR_CONFIG_INVALID'): IngestAddress[] {
  if (entries.length === 0 || entries.length > MAX_INGEST_ADDRESSES) throw inputError(code, listWhere, `expected 1 to ${MAX_INGEST_ADDRESSES} host:port entries, got ${entries.length}`);
  const addresses = entries.map(({ text, where }) => parseIngestAddress(text, where, code));
  addresses.forEach((address, index) => {
    const first = addresses.findIndex((other) => other.target === address.target);
    if (first !== index) throw inputError(code, entries[index]!.where, `${address.display} repeats addresses[${first}]`);
  });
  return addresses;
}
