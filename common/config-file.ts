import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { CtOpsError } from './errors.ts';

/**
 * Reading the TOML configuration files of the agent (agent.toml) and the appliance,
 * and other files people edit (a CA certificate, a token secret, a public key).
 * They are UTF-8, as TOML requires.
 * Editors on Windows save UTF-16 (Notepad's "Unicode", PowerShell 5's `>` and
 * Out-File) or a legacy code page; read as UTF-8 those only give the TOML parser's
 * "illegal character in key". This module names the encoding and how to fix it.
 * A UTF-8 byte order mark (PowerShell's `Set-Content -Encoding utf8`) is accepted.
 */

/**
 * Reads, decodes and parses a TOML configuration file; `owner` ("agent", "appliance") names it in errors.
 * Throws ERR_CONFIG_UNREADABLE { path } when it cannot be read, ERR_CONFIG_INVALID
 * { path, encoding | line } when it is not UTF-8 (see decodeConfigText) and ERR_CONFIG_INVALID
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
 * Share of code units that must show the NUL pattern of UTF-16/UTF-32 without a byte
 * order mark: ASCII keys and punctuation are a large part of any TOML file even when
 * its values are in another script, while one stray NUL in a UTF-8 file is nowhere near it.
 */
const NUL_PATTERN_SHARE = 0.5;

/** The codes an undecodable file is reported with: a configuration file, or a file given to a command. */
export type TextFileErrorCode = 'ERR_CONFIG_INVALID' | 'ERR_USAGE';

/**
 * Decodes a configuration (or other hand-edited text) file's bytes as UTF-8, one
 * leading UTF-8 BOM removed (CRLF is left to the reader; TOML accepts it).
 * Throws `code` (default ERR_CONFIG_INVALID) with details { path, encoding } when the
 * bytes are UTF-16 or UTF-32, by byte order mark or by the NUL pattern of most code
 * units; with { path, line } when they are not valid UTF-8 (a legacy code page such
 * as Windows-1252) or hold a NUL byte otherwise; with { path } when a second byte
 * order mark follows the UTF-8 one. The message says how to write a converted copy
 * (iconv, PowerShell) beside the file; nothing is suggested that overwrites it.
 */
export function decodeConfigText(bytes: Buffer, path: string, code: TextFileErrorCode = 'ERR_CONFIG_INVALID'): string {
  const utf8Bom = bytes.subarray(0, UTF8_BOM.length).equals(UTF8_BOM);
  const body = utf8Bom ? bytes.subarray(UTF8_BOM.length) : bytes;
  const marked = FOREIGN_BOMS.find((bom) => body.subarray(0, bom.bytes.length).equals(bom.bytes));
  if (marked && utf8Bom) throw notUtf8(code, path, { encoding: marked.encoding }, `it starts with a UTF-8 byte order mark followed by the ${marked.encoding} one (converted twice?)`);
  if (marked) throw notUtf8(code, path, { encoding: marked.encoding }, `it starts with the ${marked.encoding} byte order mark`);
  if (utf8Bom && body.subarray(0, UTF8_BOM.length).equals(UTF8_BOM)) {
    throw new CtOpsError(code, `${path} starts with two UTF-8 byte order marks (EF BB BF): remove the second one`, { path });
  }
  const unmarked = nulPatternEncoding(body);
  if (unmarked) throw notUtf8(code, path, { encoding: unmarked }, `its NUL bytes fall as they do in ${unmarked} text without a byte order mark`);
  const nul = body.indexOf(0);
  if (nul !== -1) {
    const line = lineAt(body, nul);
    throw new CtOpsError(code, `${path}: line ${line} holds a NUL byte (byte ${nul + (utf8Bom ? UTF8_BOM.length : 0)}), which no text file has: remove it`, { path, line });
  }
  const invalid = firstInvalidUtf8(body);
  if (invalid === undefined) return new TextDecoder('utf-8', { ignoreBOM: true }).decode(body);
  const line = lineAt(body, invalid);
  throw notUtf8(code, path, { line }, `line ${line} holds bytes that are not UTF-8 (a legacy code page such as Windows-1252?)`, 'WINDOWS-1252');
}

/** "UTF-32LE" … "UTF-16BE" when most code units show that encoding's NUL bytes (ASCII text in it), else undefined. */
function nulPatternEncoding(bytes: Buffer): string | undefined {
  if (bytes.length < 2) return undefined;
  const share = (width: number, zero: readonly number[], nonZero: readonly number[]) => {
    const units = Math.floor(bytes.length / width);
    let matching = 0;
    for (let unit = 0; unit < units; unit += 1) {
      const at = unit * width;
      if (zero.every((offset) => bytes[at + offset] === 0) && nonZero.some((offset) => bytes[at + offset] !== 0)) matching += 1;
    }
    return units === 0 ? 0 : matching / units;
  };
  // UTF-32 first: its ASCII units (c 0 0 0) also have a NUL in every odd byte.
  if (bytes.length % 4 === 0 && share(4, [2, 3], [0, 1]) >= NUL_PATTERN_SHARE) return 'UTF-32LE';
  if (bytes.length % 4 === 0 && share(4, [0, 1], [2, 3]) >= NUL_PATTERN_SHARE) return 'UTF-32BE';
  // Characters U+xx00 (such as 一, U+4E00) show the other order's pattern: rarely.
  const little = share(2, [1], [0]);
  const big = share(2, [0], [1]);
  if (little >= NUL_PATTERN_SHARE && big <= little / 4) return 'UTF-16LE';
  if (big >= NUL_PATTERN_SHARE && little <= big / 4) return 'UTF-16BE';
  return undefined;
}

/** The 1-based line holding byte `offset`. */
function lineAt(bytes: Buffer, offset: number): number {
  let line = 1;
  for (let at = bytes.indexOf(0x0a); at !== -1 && at < offset; at = bytes.indexOf(0x0a, at + 1)) line += 1;
  return line;
}

/**
 * The offset of the first byte that is not UTF-8, or undefined when all are.
 * A prefix that is valid UTF-8 up to an unfinished sequence decodes in streaming mode,
 * so the longest such prefix is found by bisection with the strict decoder.
 */
function firstInvalidUtf8(bytes: Buffer): number | undefined {
  const valid = (length: number) => {
    try {
      new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(0, length), { stream: length < bytes.length });
      return true;
    } catch {
      return false;
    }
  };
  if (valid(bytes.length)) return undefined;
  let good = 0;
  let bad = bytes.length;
  while (bad - good > 1) {
    const middle = (good + bad) >>> 1;
    if (valid(middle)) good = middle;
    else bad = middle;
  }
  return bad - 1;
}

function notUtf8(code: TextFileErrorCode, path: string, found: { encoding: string } | { line: number }, evidence: string, iconvFrom = 'encoding' in found ? found.encoding : 'WINDOWS-1252'): CtOpsError {
  const name = basename(path);
  return new CtOpsError(
    code,
    `${path} is not UTF-8${'encoding' in found ? ` (${found.encoding})` : ''}: ${evidence}. It must be UTF-8: ` +
      `write a UTF-8 copy with iconv -f ${iconvFrom} -t UTF-8 ${name} > ${name}.utf8 ` +
      `(Windows PowerShell: Get-Content ${name} | Set-Content -Encoding utf8 ${name}.utf8), check it, then replace ${name} with it`,
    { path, ...found },
  );
}
