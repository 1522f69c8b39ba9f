/**
 * The layout checks of a bundle, zip or extracted folder, before any content is
 * trusted: one top folder, no path tricks (absolute, "..", backslashes, control
 * characters), regular files only, modes 0644/0755, the top folder's own directory
 * entry (as `zip -r` writes it) 0755. Duplicate and colliding names, counts and sizes
 * are the zip structure's rules (bundler/zip/structure.ts); a folder cannot hold them.
 */
import { quoted } from '../lib/quoted.ts';
import { isPrintable } from '../lib/validate.ts';
import type { VerifyProblem } from './problems.ts';
import type { BundleEntry } from './source.ts';

export interface Layout<E extends BundleEntry> {
  /** The top folder, when there is exactly one. */
  readonly top: string | undefined;
  /** Safe regular files directly under the top folder, by name inside it. */
  readonly files: ReadonlyMap<string, E>;
  /** Safe files and folders deeper under the top folder (never part of a bundle). */
  readonly nested: readonly string[];
}

function unsafeName(name: string): string | undefined {
  if (name === '') return 'an empty name';
  if (name.includes('\\')) return 'a backslash in its name';
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'an absolute path';
  if (!isPrintable(name)) return 'a control character or bidi override in its name';
  const segments = (name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  if (segments.includes('..')) return 'a ".." path segment';
  if (segments.some((segment) => segment === '' || segment === '.')) return 'an empty or "." path segment';
  return undefined;
}

/** Why an entry of this kind and mode cannot be in a bundle, or undefined when it can. */
function unsafeKind(info: BundleEntry, depth: number): string | undefined {
  if (info.kind === 'symlink') return 'is a symbolic link';
  if (info.kind === 'other') return 'is not a regular file';
  if (info.kind === 'directory') return depth === 1 && info.permissions !== undefined && info.permissions !== 0o755 ? `is the top folder with mode ${info.permissions.toString(8).padStart(4, '0')}; it must be 0755` : undefined;
  if (info.permissions === undefined) return 'has no Unix permissions';
  if (info.permissions !== 0o644 && info.permissions !== 0o755) return `has mode ${info.permissions.toString(8).padStart(4, '0')}; bundle files are 0644 or 0755`;
  return undefined;
}

export function checkLayout<E extends BundleEntry>(entries: readonly E[], problems: VerifyProblem[]): Layout<E> {
  const invalid = (path: string, message: string): void => {
    problems.push({ code: 'ERR_BUNDLE_ENTRY_INVALID', message: `${quoted(path)}: ${message}`, path });
  };
  if (entries.length === 0) invalid('', 'the bundle is empty');
  const tops = new Set<string>();
  const files = new Map<string, E>();
  const nested: string[] = [];
  for (const info of entries) {
    const why = unsafeName(info.name);
    if (why !== undefined) {
      invalid(info.name, `has ${why}`);
      continue;
    }
    const segments = (info.kind === 'directory' ? info.name.replace(/\/$/, '') : info.name).split('/');
    const unsafe = unsafeKind(info, segments.length);
    if (unsafe !== undefined) {
      invalid(info.name, unsafe);
      continue;
    }
    if (segments.length === 1 && info.kind !== 'directory') {
      invalid(info.name, 'is outside the top folder');
      continue;
    }
    tops.add(segments[0]!);
    if (segments.length === 2 && info.kind === 'file') files.set(segments[1]!, info);
    else if (segments.length >= 2) nested.push(info.name);
  }
  if (tops.size > 1) invalid('', `the bundle has ${tops.size} top folders (${[...tops].sort().join(', ')}); a bundle has one`);
  const top = tops.size === 1 ? [...tops][0] : undefined;
  return { top, files: top === undefined ? new Map() : files, nested };
}
