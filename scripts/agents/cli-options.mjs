// The command line shared by the build tools (build-agents, build-image): the same flags
// mean the same thing, a wrong one is ERR_USAGE (exit 64) of the tool's own error
// catalogue, and failures print and exit the same way.
import { parseArgs } from 'node:util';
import { CatalogueError } from './errors.mjs';
import { createReporter } from './progress.mjs';

/** The flags every build tool takes: --target (repeatable), --out-dir, --json, --quiet, -h/--help. */
export const COMMON_BUILD_FLAGS = Object.freeze({
  target: { type: 'string', multiple: true },
  'out-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
  quiet: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
});

/**
 * The values of argv for COMMON_BUILD_FLAGS plus the tool's own flags (node:util parseArgs,
 * strict, no positionals). Throws new ErrorClass('ERR_USAGE', …) for an unknown option or value.
 */
export function parseBuildArgs(argv, ownFlags, ErrorClass) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_BUILD_FLAGS, ...ownFlags }, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ErrorClass('ERR_USAGE', `${error.message} (see --help)`);
  }
}

/**
 * The targets (objects with an id) named by --target, in the order of `targets`; all of them
 * when none is named. Throws new ErrorClass('ERR_USAGE', …) naming the unknown ones.
 */
export function selectTargets(wanted, targets, ErrorClass) {
  const ids = wanted ?? targets.map((target) => target.id);
  const unknown = ids.filter((id) => !targets.some((target) => target.id === id));
  if (unknown.length > 0) throw new ErrorClass('ERR_USAGE', `unknown target ${unknown.join(', ')}; known: ${targets.map((target) => target.id).join(', ')}`);
  return targets.filter((target) => ids.includes(target.id));
}

/**
 * Runs a build tool: parse its options, print --help or build, print the result as JSON with
 * --json. Returns the exit code: 0, the code's exit for a CatalogueError (printed as
 * "<tool>: <code>: <message>"), 70 for anything unexpected (with its stack).
 * @param {{ tool: string, argv: string[], parseOptions: (argv: string[]) => { help: boolean, json: boolean, quiet: boolean }, helpText: () => string, build: (options: any, report: ReturnType<typeof createReporter>) => Promise<unknown> }} steps
 */
export async function runBuildTool({ tool, argv, parseOptions, helpText, build }) {
  try {
    const options = parseOptions(argv);
    if (options.help) {
      process.stdout.write(helpText());
      return 0;
    }
    const result = await build(options, createReporter({ quiet: options.quiet }));
    if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  } catch (error) {
    if (error instanceof CatalogueError) {
      process.stderr.write(`${tool}: ${error.code}: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`${tool}: unexpected failure: ${error?.stack ?? error}\n`);
    return 70;
  }
}
