import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { CtOpsError } from './errors.ts';

/**
 * Reading the TOML configuration files of the agent (agent.toml) and the appliance.
 * They are UTF-8, as TOML requires.
 * Editors on Windows save UTF-16 (Notepad's "Unicode", PowerShell 5's `>` and
 * Out-File) or a legacy code page; read as UTF-8 those only give the TOML parser's
 * "illegal character in key". This module names the encoding and how to fix it.
 * A UTF-8 byte order mark (PowerShell's `Set-Content -Encoding utf8`) is accepted.
 */

/**
 * Reads, decodes and parses a TOML configuration file; `owner` ("agent", "appliance") names it in errors.
 * Throws ERR_CONFIG_UNREADABLE { path } when it cannot be read, ERR_CONFIG_INVALID
 * { path, encoding } when it is not UTF-8 (see decodeConfigText) and ERR_CONFIG_INVALID
 * { path } when it is not valid TOML.
 */
export function readTomlConfigFile(path: string, owner: string): Record<string, unknown> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw new CtOpsError('ERR_CONFIG_UNREADABLE', `cannot read the ${owner} configuration ${path} (${reason})`, { path }, { cause });
  }
  const text = decodeConfigText(bytes, path);
  try {
    return parseToml(text);
  } catch (cause) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${path}: not valid TOML: ${(cause as Error).message.split('\n')[0]}`, { path }, { cause });
  }
}

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);
/** Longest first, so the UTF-32LE mark (FF FE 00 00) is not taken for UTF-16LE (FF FE). */
const FOREIGN_BOMS: readonly { readonly encoding: string; readonly bytes: Buffer }[] = [
  { encoding: 'UTF-32LE', bytes: Buffer.from([0xff, 0xfe, 0x00, 0x00]) },
  { encoding: 'UTF-32BE', bytes: Buffer.from([0x00, 0x00, 0xfe, 0xff]) },
  { encoding: 'UTF-16LE', bytes: Buffer.from([0xff, 0xfe]) },
  { encoding: 'UTF-16BE', bytes: Buffer.from([0xfe, 0xff]) },
];

/**
 * Decodes a configuration file's bytes as UTF-8 (a leading UTF-8 BOM removed; CRLF
 * is left to the TOML parser, which accepts it).
 * Throws ERR_CONFIG_INVALID with fields { path, encoding } when the bytes are UTF-16
 * or UTF-32 (by byte order mark, or by the NUL bytes of UTF-16 without one), or are
 * not valid UTF-8 (a legacy code page such as Windows-1252); the message says how to
 * convert the file with iconv or PowerShell.
 */
export function decodeConfigText(bytes: Buffer, path: string): string {
  if (bytes.subarray(0, UTF8_BOM.length).equals(UTF8_BOM)) return decodeConfigText(bytes.subarray(UTF8_BOM.length), path);
  const marked = FOREIGN_BOMS.find((bom) => bytes.subarray(0, bom.bytes.length).equals(bom.bytes));
  if (marked) throw notUtf8(path, marked.encoding, `it starts with the ${marked.encoding} byte order mark`);
  const nul = bytes.indexOf(0);
  if (nul !== -1) {
    // ASCII text in UTF-16 has a NUL in every other byte: after the character (LE) or before it (BE).
    const encoding = nul % 2 === 1 ? 'UTF-16LE' : 'UTF-16BE';
    throw notUtf8(path, encoding, `it holds NUL bytes (at byte ${nul}) as ${encoding} text without a byte order mark does`);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    // The lossy decoding marks each invalid sequence with U+FFFD: its line is the one to look at.
    const lossy = bytes.toString('utf8');
    const line = lossy.slice(0, lossy.indexOf('\uFFFD')).split('\n').length;
    throw notUtf8(path, 'legacy code page', `line ${line} holds bytes that are not UTF-8 (Windows-1252 or Latin-1?)`, 'WINDOWS-1252');
  }
}

function notUtf8(path: string, encoding: string, evidence: string, iconvFrom = encoding): CtOpsError {
  const name = basename(path);
  return new CtOpsError(
    'ERR_CONFIG_INVALID',
    `${path} is not UTF-8 (${encoding}): ${evidence}. Configuration files must be UTF-8; ` +
      `save it as UTF-8: iconv -f ${iconvFrom} -t UTF-8 ${name} > ${name}.utf8 && mv ${name}.utf8 ${name} ` +
      `(Windows PowerShell: (Get-Content ${name}) | Set-Content -Encoding utf8 ${name})`,
    { path, encoding },
  );
}
