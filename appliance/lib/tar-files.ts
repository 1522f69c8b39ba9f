import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Parser as TarParser, type ReadEntry } from 'tar';
import { CtOpsError } from '../../common/errors.ts';

/**
 * What becomes of one tar entry: written to `dir`/`write` (a relative path the caller checked, its
 * folder existing), read into memory (`collect`, handed the whole content at its end; throw there to
 * stop), read past unwritten (`skip`), or refused with the reason `refuse`.
 */
export type EntryDecision = { readonly write: string } | { readonly collect: (content: Buffer) => void } | { readonly skip: true } | { readonly refuse: string };

export interface UnpackRules {
  /** Decides each entry from its header alone (path, type, size), in archive order. */
  admit(entry: ReadEntry): EntryDecision;
  /** The error an entry refused for `why` stops the unpack with. */
  refusal(entry: ReadEntry, why: string): Error;
  /** Maps what stopped the unpack (a refusal, a `collect` that threw, a broken or malformed stream: gzip, tar) to the error it rejects with. */
  readError(error: unknown): Error;
}

/**
 * Unpacks the tar stream `archive` (gzip detected by tar itself) into the existing directory `dir`
 * entry by entry, as `rules.admit` decides: nothing is written that was not admitted, so an archive
 * cannot make the caller write what its rules do not allow (a link, a nested path, a file larger than
 * its header said: tar's strict parser refuses a body longer than its header). Files are created new
 * (flags wx, mode 0600) and fsync'd when closed. Resolves once every file is written and closed; on a
 * failure, only after the writes in flight have stopped, so the caller can remove `dir` without a
 * late write re-creating a file in it. Rejects with `rules.readError(...)` for a refusal or a broken
 * stream, ERR_DATA_DIR_UNUSABLE when a file cannot be written.
 */
export async function unpackPlainFiles(archive: Readable, dir: string, rules: UnpackRules): Promise<void> {
  const parser = new TarParser({ strict: true });
  const outputs = new Set<WriteStream>();
  const writes: Array<Promise<void>> = [];
  let refusal: Error | undefined;
  // The first refusal wins; destroying the source stops reading early (it may have ended already).
  const stop = (error: Error): void => {
    refusal ??= error;
    archive.destroy(refusal);
  };
  parser.on('entry', (entry: ReadEntry) => {
    if (refusal !== undefined) return void entry.resume();
    const decision = rules.admit(entry);
    if ('refuse' in decision) {
      entry.resume();
      return stop(rules.refusal(entry, decision.refuse));
    }
    if ('skip' in decision) return void entry.resume();
    if ('collect' in decision) {
      const chunks: Buffer[] = [];
      entry.on('data', (chunk: Buffer) => chunks.push(chunk));
      entry.on('end', () => {
        try {
          decision.collect(Buffer.concat(chunks));
        } catch (error) {
          stop(error as Error);
        }
      });
      return;
    }
    const output = createWriteStream(join(dir, decision.write), { flags: 'wx', mode: 0o600, flush: true });
    outputs.add(output);
    writes.push(
      new Promise<void>((resolveWrite, reject) => {
        output.on('error', (error) => {
          // A file that cannot be written (disk full) stops the unpack: nothing more is read.
          stop(new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot write the unpacked files in ${dir}: ${error.message}`, { path: dir }, { cause: error }));
          reject(error);
        });
        output.on('close', () => {
          outputs.delete(output);
          resolveWrite();
        });
        entry.pipe(output);
      }),
    );
  });
  try {
    await new Promise<void>((resolveParse, reject) => {
      archive.on('error', reject);
      parser.on('error', reject);
      parser.on('end', () => resolveParse());
      archive.pipe(parser);
    });
  } catch (error) {
    archive.destroy();
    for (const output of outputs) output.destroy();
    await Promise.allSettled(writes);
    throw rules.readError(refusal ?? error);
  }
  if (refusal !== undefined) {
    await Promise.allSettled(writes);
    throw rules.readError(refusal);
  }
  const failed = (await Promise.allSettled(writes)).find((result) => result.status === 'rejected');
  if (failed !== undefined) throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot write the unpacked files in ${dir}`, { path: dir }, { cause: failed.reason });
}
