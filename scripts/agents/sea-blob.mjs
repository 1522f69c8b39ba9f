// The single-executable preparation blob, made once and injected into every target.
// Node 22.23.2 itself must write it (a blob from another Node version crashes the
// executable), and without a startup snapshot or code cache it holds only the script,
// so the one blob made by the host's base binary serves every platform.
import { builtinModules } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BuildAgentsError } from './errors.mjs';
import { runStep } from './tools.mjs';

const BUILTINS = new Set(builtinModules);

/**
 * A single executable's main script can require built-in modules only: nothing from
 * disk, and nothing computed at run time that the check could not see.
 */
export function assertSelfContained(bundlePath) {
  const source = readFileSync(bundlePath, 'utf8');
  const problems = [];
  for (const match of source.matchAll(/\brequire(?:\.resolve)?\(\s*([^)]{0,80})/g)) {
    const argument = match[1].replace(/\/\*[^]*?\*\//g, '').trim();
    const literal = /^(["'])([^"']+)\1$/.exec(argument);
    if (!literal) problems.push(`dynamic require(${argument.slice(0, 40)}…)`);
    else if (!BUILTINS.has(literal[2].replace(/^node:/, ''))) problems.push(`require("${literal[2]}")`);
  }
  if (problems.length > 0) {
    throw new BuildAgentsError('ERR_BUNDLE_NOT_SELF_CONTAINED', `${bundlePath} loads modules a single executable cannot: ${[...new Set(problems)].join(', ')}`);
  }
}

/** Writes the SEA blob for bundlePath with the given Node binary; returns its path. */
export async function makeSeaBlob(nodeBinary, bundlePath, workDir) {
  const blob = join(workDir, 'ct-ops-agent.blob');
  const config = join(workDir, 'sea-config.json');
  writeFileSync(config, JSON.stringify({ main: bundlePath, output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false }, null, 2));
  await runStep('making the SEA blob', nodeBinary, ['--experimental-sea-config', config], { cwd: workDir });
  return blob;
}
