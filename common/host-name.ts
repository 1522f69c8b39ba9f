import { isIP } from 'node:net';
import { domainToASCII, domainToUnicode } from 'node:url';
import { CtOpsError } from './errors.ts';

/**
 * Host names as the appliance (certificate SANs), the bundler (--address) and the
 * agent (agent.toml address, TLS server name) use them. Certificates, SNI, DNS and
 * gRPC targets only carry ASCII, so an internationalised name is converted once, at
 * the edge, to its IDNA form (UTS #46 as WHATWG URL applies it: node's
 * url.domainToASCII) and everything after works with that form; people are shown
 * both ("bücher.example (xn--bcher-kva.example)"). RFC 1035/5891 limits are then
 * checked on the ASCII form, because domainToASCII does not check them.
 */
export interface HostName {
  /** Lower-case letters, digits, hyphens and dots, no trailing dot; or an IP literal as given (IPv6 without brackets). */
  readonly ascii: string;
  /** The form people read: `describeHostName(ascii)`. */
  readonly display: string;
}

const MAX_NAME_CHARS = 253;
const MAX_LABEL_CHARS = 63;
/** Letters, digits and inner hyphens (STD3 / RFC 952 "LDH"): underscores and other ASCII are refused. */
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
/** Hyphens in positions 3-4 are reserved for IDNA (RFC 5891 §4.2.3.1): only "xn--" is defined. */
const RESERVED_HYPHENS = /^..--/;

/**
 * Converts a host name or IP literal to the form used on the wire.
 * Accepts Unicode or ASCII names in any case, with or without one trailing dot,
 * IPv4 literals, and IPv6 literals with or without brackets (returned unchanged, brackets removed).
 * Throws ERR_CONFIG_INVALID naming `where` when the name cannot be converted or is
 * not a valid DNS name afterwards (empty label, label over 63 or name over 253
 * characters, leading/trailing or reserved hyphens, characters outside letters,
 * digits and hyphens, or a name that URL parsers read as an IPv4 address such as "127.1").
 */
export function parseHostName(text: string, where: string): HostName {
  const trimmed = text.trim();
  const unbracketed = /^\[(.*)\]$/.exec(trimmed)?.[1];
  if (unbracketed !== undefined && isIP(unbracketed) === 6) return literal(unbracketed);
  if (isIP(trimmed) !== 0) return literal(trimmed);
  const refuse = (reason: string) => new CtOpsError('ERR_CONFIG_INVALID', `${where}: ${JSON.stringify(text)} is not a usable host name: ${reason}`, { where });
  // One trailing dot only marks the name as fully qualified; certificates and SNI never carry it.
  const name = trimmed.endsWith('.') ? trimmed.slice(0, -1) : trimmed;
  const ascii = name === '' ? '' : domainToASCII(name);
  if (ascii === '') throw refuse('it cannot be converted to its ASCII (IDNA) form');
  if (isIP(ascii) !== 0) throw refuse(`URL parsers read it as the IP address ${ascii}; write the address itself`);
  if (ascii.length > MAX_NAME_CHARS) throw refuse(`its ASCII form ${ascii} is longer than ${MAX_NAME_CHARS} characters`);
  for (const label of ascii.split('.')) {
    if (label === '') throw refuse('it has an empty label (two dots in a row, or a leading dot)');
    if (label.length > MAX_LABEL_CHARS) throw refuse(`the label ${label} is longer than ${MAX_LABEL_CHARS} characters`);
    if (!LDH_LABEL.test(label)) throw refuse(`the label ${label} must hold only letters, digits and hyphens, and not begin or end with a hyphen`);
    if (RESERVED_HYPHENS.test(label) && !label.startsWith('xn--')) throw refuse(`the label ${label} has "--" in positions 3-4, which only IDNA ("xn--") labels may`);
  }
  return Object.freeze({ ascii, display: describeHostName(ascii) });
}

/** "bücher.example (xn--bcher-kva.example)" for an IDNA name, the name itself otherwise. */
export function describeHostName(ascii: string): string {
  const unicode = unicodeHostName(ascii);
  return unicode === ascii ? ascii : `${unicode} (${ascii})`;
}

/** The Unicode form of an ASCII name ("xn--bcher-kva.example" → "bücher.example"); IP literals and plain names unchanged. */
export function unicodeHostName(ascii: string): string {
  return (isIP(ascii) === 0 && domainToUnicode(ascii)) || ascii;
}

function literal(address: string): HostName {
  return Object.freeze({ ascii: address, display: address });
}
