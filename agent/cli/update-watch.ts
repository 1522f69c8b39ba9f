import { releaseExecutableOf } from '../../bundler/lib/targets.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import type { AgentLogger } from '../log/logger.ts';
import { osName } from '../registration/request.ts';
import { gateFromEnv, runUpdateWatch, serviceControlManager, startDetachedWatcher, windowsUpdatePaths } from '../update/update-watch.ts';
import { loadConfigLogged } from './startup.ts';

/**
 * `update-watch`: installs the self-update staged in the Windows spool and watches it
 * (update/update-watch.ts). With `detach`, starts itself again outside the caller's process tree
 * and returns at once. Exit codes as the root helper's: 0 updated, 1 refused, 2 rolled back.
 */
export async function watchUpdate(configFile: string, detach: boolean, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<number> {
  if (detach) {
    startDetachedWatcher(configFile);
    return 0;
  }
  const { config } = loadConfigLogged(configFile, env, log);
  const paths = windowsUpdatePaths(env, process.execPath);
  const answer = await runUpdateWatch({
    ...paths,
    releaseFileName: releaseExecutableOf({ os: osName(process.platform), arch: process.arch }) ?? '',
    installedVersion: PRODUCT_VERSION,
    releaseKey: config.releaseKey,
    service: serviceControlManager(env),
    ...gateFromEnv(env),
    log,
  });
  log.info({ answer }, 'update watch finished');
  return answer.startsWith('update ok') ? 0 : answer.startsWith('update refused') ? 1 : 2;
}
