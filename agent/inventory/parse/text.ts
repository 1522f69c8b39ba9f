import { MAX_INSTALL_DATE_UNIX } from '../../../common/inventory-records.ts';

/** Small helpers shared by the parsers. */

/** The lines of a tool's output (LF or CRLF) that are not blank, each with its 1-based line number. */
export function lines(text: string): { line: string; at: number }[] {
  return text.split(/\r?\n/).flatMap((line, index) => (line.trim() === '' ? [] : [{ line, at: index + 1 }]));
}

/** The date when it is a plausible install date (1970 to MAX_INSTALL_DATE_UNIX), else 0: unknown. */
function plausibleDate(seconds: number): number {
  return Number.isSafeInteger(seconds) && seconds > 0 && seconds <= MAX_INSTALL_DATE_UNIX ? seconds : 0;
}

/** Blocks of "Key: value" lines separated by blank lines (pacman -Qi, apk's installed db). */
export function blocks(text: string): string[][] {
  return text
    .split(/\r?\n[ \t]*\r?\n/)
    .map((block) => block.split(/\r?\n/).filter((line) => line !== ''))
    .filter((block) => block.length > 0);
}

/** "Jane Doe <jane@example.org>" → "Jane Doe"; a bare address or name is kept as it is. */
export function personName(value: string): string {
  const name = value.replace(/<[^>]*>/g, '').trim();
  return name !== '' ? name : value.trim();
}

/** Whole seconds from a decimal string of seconds; 0 when it is not one or not a plausible install date. */
export function unixSeconds(value: string | undefined): number {
  return value !== undefined && /^\d+$/.test(value.trim()) ? plausibleDate(Number(value.trim())) : 0;
}

/** A calendar date YYYYMMDD (as Windows Installer writes it) at 00:00 UTC, or 0 when malformed or implausible (99991231). */
export function unixFromYyyymmdd(value: string | undefined): number {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(value?.trim() ?? '');
  if (!match) return 0;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const ms = Date.UTC(year, month - 1, day);
  const date = new Date(ms);
  if (year < 1980 || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return 0;
  return plausibleDate(ms / 1000);
}

/** A date a tool printed in its locale's format (C locale for us), or 0 when it cannot be read or is implausible. */
export function unixFromDateText(value: string | undefined): number {
  const ms = Date.parse(value ?? '');
  return Number.isFinite(ms) ? plausibleDate(Math.floor(ms / 1000)) : 0;
}

/** The text without a leading byte order mark (PowerShell 5 writes one with UTF-8 output); JSON.parse refuses it. */
export function withoutBom(text: string): string {
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

/** A JSON field as trimmed text; anything that is not a string (absent, null, a number) is ''. */
export function jsonText(value: unknown): string {
  return typeof value === 'string' ? value.trim() : '';
}
