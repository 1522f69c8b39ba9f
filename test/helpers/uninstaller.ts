/**
 * A stand-in for uninstall.sh for tests where a real agent runs as root and starts its uninstaller
 * itself (agent/tasks/uninstall.ts, method setsid): it outlives the agent by 2 s, leaves a marker
 * file, then reports like uninstall.sh does (`ct-ops-agent report-task` with the agent's config).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_BIN } from './processes.ts';

/** Where a root agent's uninstaller writes its output (agent/tasks/uninstall.ts). */
export const UNINSTALL_LOG = '/var/log/ct-ops-uninstall.log';

/** The message a succeeding stand-in reports. */
export const STANDIN_REMOVED = 'stand-in removed the agent';

/** Writes the stand-in as `dir`/uninstall.sh (mode 0755) and answers its path. */
export function writeStandInUninstaller(dir: string): string {
  const path = join(dir, 'uninstall.sh');
  writeFileSync(path, `#!/bin/sh
set -eu
[ "$1" = --report-task ] || exit 64
echo "stand-in uninstaller for $2 (pid $$)"
sleep 2
echo "$2" >"$STANDIN_MARKER"
if [ "\${STANDIN_OUTCOME:-succeeded}" = succeeded ]; then
  exec "${process.execPath}" "${AGENT_BIN}" -config "$STANDIN_CONFIG" report-task --task-id="$2" --outcome=succeeded "--message=${STANDIN_REMOVED}"
fi
exec "${process.execPath}" "${AGENT_BIN}" -config "$STANDIN_CONFIG" report-task --task-id="$2" --outcome=failed --error-code=ERR_UNINSTALL_FAILED "--message=failed: rm -rf /etc/ct-ops"
`);
  chmodSync(path, 0o755);
  return path;
}

/**
 * The environment of a root agent that starts `uninstaller` itself (no helper spool) and of the
 * stand-in it starts: the marker file it leaves, the agent's config to report with, the outcome.
 */
export function standInEnv(uninstaller: string, agent: { readonly root: string; readonly configPath: string }, outcome: 'succeeded' | 'failed'): NodeJS.ProcessEnv {
  return {
    CT_OPS_UNINSTALLER: uninstaller,
    // No helper spool here: the root agent must start the uninstaller itself.
    CT_OPS_HELPER_REQUESTS_DIR: join(agent.root, 'no-such-spool'),
    STANDIN_MARKER: standInMarker(agent),
    STANDIN_CONFIG: agent.configPath,
    STANDIN_OUTCOME: outcome,
  };
}

/** The file the stand-in writes when it has finished, before it reports. */
export function standInMarker(agent: { readonly root: string }): string {
  return join(agent.root, 'uninstaller-finished');
}
