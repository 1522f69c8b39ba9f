import { isIP } from 'node:net';
import { domainToASCII, domainToUnicode } from 'node:url';
import { CtOpsError } from './errors.ts';

/**
 * Host names as the appliance (certificate SANs), the bundler (--address) and the
 * agent (agent.toml address, TLS server name) use them. Certificates, SNI, DNS and
 * gRPC targets only carry ASCII, so an internationalised name is converted once, at
 * the edge, to its IDNA form (UTS #46 as WHATWG URL applies it: node's
 * url.domainToASCII) and everything after works with that form; people are shown
 * both ("bücher.example (xn--bcher-kva.example)"). domainToASCII parses a URL host
 * (it drops what follows "/", "?" or "#", decodes %xx, reads "127.1" as an address)
 * and checks no DNS limits, so ASCII punctuation is refused before it and RFC
 * 1035/5891 limits are checked on its result (decision 45 in docs/decisions.md).
 */
export interface HostName {
  /** Lower-case letters, digits, hyphens, underscores and dots, no trailing dot; or an IP literal (IPv6 canonical, without brackets). */
  readonly ascii: string;
  /** The Unicode form of `ascii` ("bücher.example"); `ascii` itself for ASCII names and IP literals. */
  readonly unicode: string;
  /**
   * The name as given, when it is read as another name than it shows (UTS #46 maps
   * "ß" in "STRAẞE" to "ss", "ﬁ" to "fi", "①" to "1", drops soft hyphens and
   * zero-width spaces); undefined when the given name is the name used (case, NFC
   * and a trailing dot aside). People are warned: the certificate and agents use `ascii`.
   */
  readonly given: string | undefined;
}

/** The codes a refused name is reported with: a configuration (details { where }) or a request argument (details { field }). */
export type HostNameErrorCode = 'ERR_CONFIG_INVALID' | 'ERR_INVALID_ARGUMENT';

/** A refused input named by `where` ("--san", "CT_OPS_INGEST_ADDRESS", "address"), with the details its code carries. */
export function inputError(code: HostNameErrorCode, where: string, message: string): CtOpsError {
  return new CtOpsError(code, `${where}: ${message}`, code === 'ERR_INVALID_ARGUMENT' ? { field: where } : { where });
}

const MAX_NAME_CHARS = 253;
const MAX_LABEL_CHARS = 63;
/**
 * Letters, digits, hyphens (not first or last) and underscores. Underscores are not
 * STD3 (RFC 952) but names such as "ct_ops_appliance" exist, DNS carries them and
 * node's TLS accepts DNS:my_host, so they are kept working (decision 45).
 */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/;
/** Hyphens in positions 3-4 are reserved for IDNA (RFC 5891 §4.2.3.1): only "xn--" is defined. */
const RESERVED_HYPHENS = /^..--/;
/** The ASCII characters a host name may hold. */
const NAME_CHARACTER = /[a-z0-9_.-]/i;
/** A label URL parsers read as a number ("123", "0x1f"): a name ending in one is parsed as an IPv4 address. */
const NUMERIC_LABEL = /^(?:\d+|0x[0-9a-f]*)$/i;

/** Why an ASCII character other than a letter, digit, '-', '_' or '.' cannot be in a host name. */
function refusedCharacter(char: string, name: string): string {
  if (char === ':') {
    const port = /^[^:]*:(\d+)$/.exec(name)?.[1];
    return port === undefined
      ? 'it holds ":", which only IPv6 addresses do, and it is not a valid IPv6 address'
      : `it ends in a port (:${port}); a host name or certificate name carries none (a port belongs in host:port addresses only)`;
  }
  switch (char) {
    case '/':
    case '\\':
      return `it holds "${char}", which ends the host part of a URL (a path?)`;
    case '?':
      return 'it holds "?", which starts the query of a URL';
    case '#':
      return 'it holds "#", which starts the fragment of a URL';
    case '%':
      return 'it holds "%": percent escapes (%61) are not decoded in host names, and an IPv6 zone (%eth0) is not a host name';
    case '@':
      return 'it holds "@", which separates a user name from the host in URLs';
    case '[':
    case ']':
      return 'brackets enclose a whole IPv6 address only, such as [fd00::1]';
    default:
      return /[\x00-\x20\x7f]/.test(char)
        ? `it holds a space or control character (U+${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')})`
        : `it holds ${JSON.stringify(char)}; host names hold only letters, digits, hyphens, underscores and dots`;
  }
}

/**
 * Converts a host name or IP literal to the form used on the wire.
 * Accepts Unicode or ASCII names in any case, with or without one trailing dot,
 * IPv4 literals, and IPv6 literals with or without brackets (canonical form:
 * "0:0:0:0:0:0:0:1" → "::1").
 * Throws `code` (default ERR_CONFIG_INVALID) naming `where` and the reason when the
 * name holds ASCII punctuation, a space or control character, or an IPv6 zone id
 * ("%eth0": a certificate cannot name one); when it cannot be converted; or when it
 * is no DNS name afterwards (empty label, label over 63 or name over 253 characters,
 * leading/trailing or reserved hyphens, a last label URL parsers read as a number,
 * or a name they read as an IPv4 address such as "127.1").
 */
export function parseHostName(text: string, where: string, code: HostNameErrorCode = 'ERR_CONFIG_INVALID'): HostName {
  const trimmed = text.trim();
  const refuse = (reason: string) => inputError(code, where, `${JSON.stringify(text)} is not a usable host name: ${reason}`);
  const bracketed = /^\[(.*)\]$/.exec(trimmed)?.[1];
  const address = bracketed ?? trimmed;
  if (isIP(address) !== 0 || (bracketed !== undefined && address.includes('%'))) {
    if (address.includes('%')) throw refuse('it names an IPv6 zone (%...), which a certificate cannot name and other hosts cannot use; give the address alone');
    if (bracketed !== undefined && isIP(address) !== 6) throw refuse(`brackets enclose IPv6 addresses only; write ${address} without them`);
    return literal(address);
  }
  if (bracketed !== undefined) throw refuse('brackets enclose IPv6 addresses only, and this is not one');
  // One trailing dot only marks the name as fully qualified; certificates and SNI never carry it.
  const name = trimmed.endsWith('.') ? trimmed.slice(0, -1) : trimmed;
  if (name === '') throw refuse('it is empty');
  const refusedAscii = [...name].find((char) => char < '\x80' && !NAME_CHARACTER.test(char));
  if (refusedAscii !== undefined) throw refuse(refusedCharacter(refusedAscii, name));
  const ascii = domainToASCII(name);
  if (isIP(ascii) !== 0) throw refuse(`URL parsers read it as the IP address ${ascii}; write the address itself`);
  if (ascii === '') {
    const last = name.split('.').pop() ?? '';
    if (/^[\d.]+$/.test(name)) throw refuse('it is not a valid IPv4 address (four numbers from 0 to 255)');
    if (NUMERIC_LABEL.test(last)) throw refuse(`its last label ${last} is a number, so URL parsers read the name as an IPv4 address`);
    throw refuse('it cannot be converted to its ASCII (IDNA) form');
  }
  // UTS #46 maps some characters to ASCII punctuation ("／" to "/"): the result is checked as the input was.
  const mappedAscii = [...ascii].find((char) => !NAME_CHARACTER.test(char));
  if (mappedAscii !== undefined) throw refuse(`its ASCII form ${ascii} ${refusedCharacter(mappedAscii, ascii).replace(/^it /, '')}`);
  if (ascii.length > MAX_NAME_CHARS) throw refuse(`its ASCII form ${ascii} is longer than ${MAX_NAME_CHARS} characters`);
  for (const label of ascii.split('.')) {
    if (label === '') throw refuse('it has an empty label (two dots in a row, or a leading dot)');
    if (label.length > MAX_LABEL_CHARS) throw refuse(`the label ${label} is longer than ${MAX_LABEL_CHARS} characters`);
    if (!LABEL.test(label)) throw refuse(`the label ${label} begins or ends with a hyphen`);
    if (RESERVED_HYPHENS.test(label) && !label.startsWith('xn--')) throw refuse(`the label ${label} has "--" in positions 3-4, which only IDNA ("xn--") labels may`);
  }
  const unicode = unicodeHostName(ascii);
  return Object.freeze({ ascii, unicode, given: readAsGiven(name, ascii, unicode) ? undefined : name });
}

/**
 * True when each label of the given name, in NFC and lower case, is its label in
 * `unicode` or in `ascii` ("BÜCHER" and "xn--bcher-kva" both read as given; "ﬁ" does not).
 */
function readAsGiven(name: string, ascii: string, unicode: string): boolean {
  const asciiLabels = ascii.split('.');
  const unicodeLabels = unicode.split('.');
  const givenLabels = name.normalize('NFC').toLowerCase().split('.');
  return givenLabels.length === asciiLabels.length && givenLabels.every((label, index) => label === asciiLabels[index] || label === unicodeLabels[index]);
}

/**
 * The name for people, with ":port" when given: "bücher.example:9443 (xn--bcher-kva.example:9443)"
 * for an IDNA name; "ﬁ.example (read as fi.example)" when it is read as another name than given;
 * the name (IPv6 in brackets when a port follows) otherwise.
 */
export function describeHostName(name: HostName, port?: number): string {
  const withPort = (host: string) => (port === undefined ? host : hostWithPort(host, port));
  const used = name.unicode === name.ascii ? withPort(name.ascii) : `${withPort(name.unicode)} (${withPort(name.ascii)})`;
  if (name.given === undefined) return used;
  return `${withPort(name.given)} (read as ${name.unicode === name.ascii ? withPort(name.ascii) : `${withPort(name.unicode)}, ${withPort(name.ascii)}`})`;
}

/** "host:port", with an IPv6 literal in brackets. */
export function hostWithPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The warning for a name read as another name than given (see HostName.given); undefined when it is read as given. */
export function hostNameWarning(name: HostName, where: string): string | undefined {
  if (name.given === undefined) return undefined;
  return `${where}: ${JSON.stringify(name.given)} is read as ${name.unicode === name.ascii ? name.ascii : `${name.unicode} (${name.ascii})`}, which is not the name as written; write that name to use it knowingly`;
}

/** The Unicode form of an ASCII name ("xn--bcher-kva.example" → "bücher.example"); IP literals and plain names unchanged. */
export function unicodeHostName(ascii: string): string {
  return (isIP(ascii) === 0 && domainToUnicode(ascii)) || ascii;
}

/** An IP literal in its canonical form: IPv6 compressed and lower-case (as WHATWG URL serialises it), so one address is one SAN. */
function literal(address: string): HostName {
  const ascii = isIP(address) === 6 ? new URL(`http://[${address}]`).hostname.slice(1, -1) : address;
  return Object.freeze({ ascii, unicode: ascii, given: undefined });
}
