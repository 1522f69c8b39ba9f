import { join } from 'node:path';
import { packageRoot } from '../../common/package-root.ts';

/** Where `npm run build:agents` puts the release executables: dist/agents/<version>/. */
export function defaultAgentsDir(): string {
  return join(packageRoot(), 'dist', 'agents');
}

/** The directory holding installers/, systemd/, launchd/ and windows/. */
export function defaultTemplatesDir(): string {
  return packageRoot();
}
