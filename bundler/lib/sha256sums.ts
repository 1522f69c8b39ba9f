/**
 * sha256sum's text format: "<64 hex>  <name>" per line (a "*" before the name marks
 * binary mode and is accepted when reading). Written sorted by name, byte order.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function formatSha256Sums(entries: ReadonlyArray<{ name: string; sha256: string }>): string {
  return [...entries]
    .sort((a, b) => byName(a.name, b.name))
    .map(({ name, sha256 }) => `${sha256}  ${name}\n`)
    .join('');
}

export interface ParsedSums {
  /** name → lower-case hex digest */
  readonly digests: ReadonlyMap<string, string>;
  /** Lines that are not "<hex>  <name>", and names listed twice. */
  readonly malformed: readonly string[];
}

export function parseSha256Sums(text: string): ParsedSums {
  const digests = new Map<string, string>();
  const malformed: string[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const match = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
    if (!match) {
      malformed.push(line);
      continue;
    }
    const name = match[2]!;
    if (digests.has(name)) malformed.push(line);
    else digests.set(name, match[1]!.toLowerCase());
  }
  return { digests, malformed };
}
