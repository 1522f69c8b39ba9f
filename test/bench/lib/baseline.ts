import { execFileSync } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../helpers/processes.ts';

/**
 * Extracts commit `ref` of this repository into `work`/baseline (`git archive`) and builds it there
 * with that commit's own scripts/build.mjs and this checkout's node_modules, so a bench can run the
 * baseline side by side with today's build in the same run. Returns the baseline's appliance entry
 * (dist/ct-ops-appliance.js).
 */
export function buildBaseline(ref: string, work: string): string {
  const dir = join(work, 'baseline');
  execFileSync('sh', ['-c', `mkdir -p "$1" && git -C "$2" archive "$3" | tar -x -C "$1"`, 'sh', dir, REPO_ROOT, ref]);
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  return join(dir, 'dist/ct-ops-appliance.js');
}
