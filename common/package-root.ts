import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'ct-ops-appliance';

/**
 * The repository (or installed package) root: the nearest directory above this
 * module whose package.json is ours. Works from source (common/) and from the
 * esbuild output (dist/, dist/chunks/), whatever the working directory; falls back to
 * the working directory.
 */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME) return dir;
      } catch {
        // not ours; keep looking
      }
    }
    if (dirname(dir) === dir) return process.cwd();
  }
}
