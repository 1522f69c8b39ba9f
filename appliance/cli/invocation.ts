import { realpathSync } from 'node:fs';
import { delimiter, isAbsolute, join, relative } from 'node:path';
import { hasUnsafeSingleLineText } from '../../common/agent-text.ts';

/** The package.json scripts that run `ct-ops-appliance serve`. */
const NPM_SCRIPTS_THAT_SERVE: ReadonlySet<string> = new Set(['start', 'appliance']);

/**
 * How a person runs this CLI again, in another terminal, from where the appliance was started:
 * the one place that decides the command the first-start text prints (the image of issue 10
 * adds its case here). Returns the words before the subcommand, ready for a POSIX shell:
 * - started by npm from a clone (`npm start`, `npm run appliance -- serve`): `npm run appliance --`
 *   (npm runs scripts in the package's folder, so this works from anywhere in the clone);
 * - started as the installed command (`ct-ops-appliance` on PATH is this very script), or by the
 *   image's launcher (bin/ct-ops-appliance sets CT_OPS_LAUNCHER=ct-ops-appliance; image/install.sh
 *   links it as /usr/local/bin/ct-ops-appliance): `ct-ops-appliance`;
 * - otherwise (`node dist/ct-ops-appliance.js serve`): `node` and the script's path, relative to
 *   the working directory when it lies below it.
 */
export function adminCommandPrefix(env: NodeJS.ProcessEnv, scriptPath: string, cwd: string): string {
  // npm names the script it runs and its package: only our `start` and `appliance` scripts run the
  // appliance itself (an appliance that `npm test` spawns was not started by a person with npm).
  if (NPM_SCRIPTS_THAT_SERVE.has(env.npm_lifecycle_event ?? '') && env.npm_package_name === 'ct-ops-appliance') return 'npm run appliance --';
  if (env.CT_OPS_LAUNCHER === 'ct-ops-appliance') return 'ct-ops-appliance';
  const script = realPath(scriptPath);
  if (script !== undefined && installedCommands(env.PATH ?? '').some((command) => realPath(command) === script)) return 'ct-ops-appliance';
  const fromCwd = relative(cwd, scriptPath);
  const shown = fromCwd.startsWith('..') || isAbsolute(fromCwd) ? scriptPath : fromCwd;
  return `node ${shellWord(shown)}`;
}

function installedCommands(path: string): string[] {
  return path.split(delimiter).filter((dir) => isAbsolute(dir)).map((dir) => join(dir, 'ct-ops-appliance'));
}

function realPath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/**
 * A word the shell passes through unchanged: bare when it holds only safe characters, else
 * single-quoted; one holding a control or bidirectional character (hasUnsafeSingleLineText) is
 * ANSI-C quoted ($'…': bash, zsh, ksh, POSIX.1-2024 sh; not dash) with its UTF-8 bytes escaped, so the
 * printed command both works and cannot drive the terminal it is printed on.
 */
export function shellWord(text: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  if (hasUnsafeSingleLineText(text)) return `$'${[...text].map(ansiCEscaped).join('')}'`;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** One character inside $'…': \\ and \' escaped, an unsafe one as its UTF-8 bytes (\xHH, whatever the locale). */
function ansiCEscaped(character: string): string {
  if (character === '\\' || character === "'") return `\\${character}`;
  if (!hasUnsafeSingleLineText(character)) return character;
  return [...Buffer.from(character, 'utf8')].map((byte) => `\\x${byte.toString(16).padStart(2, '0')}`).join('');
}
