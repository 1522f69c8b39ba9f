/**
 * What verify reads a bundle from: a zip (bundler/zip/read.ts) or the folder an
 * operator extracted it to (folder.ts). Both list their entries the same way, so the
 * layout, signature, content and manifest checks are one code path for both.
 */
import type { EntryKind } from '../zip/read.ts';

export interface BundleEntry {
  /** "<top folder>/<name>", with a trailing "/" for a directory. */
  readonly name: string;
  readonly kind: EntryKind;
  /** Permission bits (0o7777), or undefined when the entry records none. */
  readonly permissions: number | undefined;
  /** Bytes of content. */
  readonly size: number;
}

export interface BundleSource<E extends BundleEntry> {
  readonly entries: readonly E[];
  /** Reads an entry whole; refuses more than maxBytes. */
  read(entry: E, maxBytes: number): Promise<Buffer>;
  /** Streams an entry through SHA-256. */
  sha256(entry: E): Promise<{ sha256: string; size: number }>;
  close(): Promise<void>;
}
