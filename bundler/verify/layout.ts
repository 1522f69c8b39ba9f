/**
 * The structural checks of a bundle zip, before any content is trusted: one top
 * folder, no path tricks (absolute, "..", backslashes, control characters, a Unicode
 * Path field that disagrees with the header), regular files only, modes 0644/0755,
 * no duplicate names (case-insensitively: Windows and macOS extract to one file).
 */
import type { ZipEntryInfo } from '../zip/read.ts';
import type { VerifyProblem } from './problems.ts';

export const MAX_ENTRIES = 1000;
export const MAX_TOTAL_BYTES = 4 * 1024 ** 3;

export interface Layout {
  /** The top folder, when there is exactly one. */
  readonly top: string | undefined;
  /** Safe regular files directly under the top folder, by name inside it. */
  readonly files: ReadonlyMap<string, ZipEntryInfo>;
  /** Safe regular files deeper under the top folder (never part of a bundle). */
  readonly nested: readonly string[];
}

function unsafeName(info: ZipEntryInfo): string | undefined {
  const { name } = info;
  if (name === '') return 'an empty name';
  if (name !== info.headerName) return `a Unicode Path field (${JSON.stringify(name)}) that differs from its header name (${JSON.stringify(info.headerName)})`;
  if (name.includes('\\')) return 'a backslash in its name';
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'an absolute path';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'a control character in its name';
  const segments = (name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  if (segments.includes('..')) return 'a ".." path segment';
  if (segments.some((segment) => segment === '' || segment === '.')) return 'an empty or "." path segment';
  return undefined;
}

export function checkLayout(entries: readonly ZipEntryInfo[], problems: VerifyProblem[]): Layout {
  const invalid = (path: string, message: string): void => {
    problems.push({ code: 'ERR_BUNDLE_ENTRY_INVALID', message: `${JSON.stringify(path)}: ${message}`, path });
  };
  if (entries.length === 0) invalid('', 'the zip is empty');
  if (entries.length > MAX_ENTRIES) invalid('', `the zip has ${entries.length} entries; a bundle has far fewer than ${MAX_ENTRIES}`);
  const total = entries.reduce((sum, info) => sum + info.size, 0);
  if (total > MAX_TOTAL_BYTES) invalid('', `the zip expands to ${total} bytes`);

  const seen = new Map<string, string>();
  const tops = new Set<string>();
  const files = new Map<string, ZipEntryInfo>();
  const nested: string[] = [];
  for (const info of entries) {
    const why = unsafeName(info);
    if (why !== undefined) {
      invalid(info.name, `has ${why}`);
      continue;
    }
    const folded = info.name.toLowerCase();
    const earlier = seen.get(folded);
    if (earlier !== undefined) {
      invalid(info.name, earlier === info.name ? 'appears twice' : `collides with ${JSON.stringify(earlier)} on case-insensitive file systems`);
      continue;
    }
    seen.set(folded, info.name);
    if (info.kind !== 'file') {
      invalid(info.name, info.kind === 'symlink' ? 'is a symbolic link' : info.kind === 'directory' ? 'is a directory entry (bundles have none)' : 'is not a regular file');
      continue;
    }
    if (info.encrypted) {
      invalid(info.name, 'is encrypted');
      continue;
    }
    if (info.permissions === undefined) {
      invalid(info.name, 'has no Unix permissions');
      continue;
    }
    if (info.permissions !== 0o644 && info.permissions !== 0o755) {
      invalid(info.name, `has mode ${info.permissions.toString(8).padStart(4, '0')}; bundle files are 0644 or 0755`);
      continue;
    }
    const segments = info.name.split('/');
    if (segments.length === 1) {
      invalid(info.name, 'is outside the top folder');
      continue;
    }
    tops.add(segments[0]!);
    if (segments.length === 2) files.set(segments[1]!, info);
    else nested.push(info.name);
  }
  if (tops.size > 1) invalid('', `the zip has ${tops.size} top folders (${[...tops].sort().join(', ')}); a bundle has one`);
  const top = tops.size === 1 ? [...tops][0] : undefined;
  return { top, files: top === undefined ? new Map() : files, nested };
}
