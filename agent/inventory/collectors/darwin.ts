import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { parseBrewList } from '../parse/brew.ts';
import { mergeParsed } from '../parse/records.ts';
import { parseSystemProfilerApplications } from '../parse/system-profiler.ts';
import { NOT_AVAILABLE, type CommandSpec } from '../run.ts';
import type { InventoryCollector } from './collector.ts';

export const systemProfilerCollector: InventoryCollector = {
  name: 'system_profiler',
  async collect({ run }) {
    const output = await run({ command: '/usr/sbin/system_profiler', args: ['-json', 'SPApplicationsDataType'] });
    return output === NOT_AVAILABLE ? output : parseSystemProfilerApplications(output);
  },
};

/** Where Homebrew installs itself (Apple silicon, Intel); launchd's PATH includes neither. */
const BREW_PATHS = ['/opt/homebrew/bin/brew', '/usr/local/bin/brew'];

const BREW_ENV = { HOMEBREW_NO_AUTO_UPDATE: '1', HOMEBREW_NO_ANALYTICS: '1', HOMEBREW_NO_ENV_HINTS: '1' };

/**
 * How to run brew: Homebrew refuses to run as root, and the agent is root, so brew runs
 * as the user who owns it (with a neutral HOME, since that user's is unknown here).
 */
async function brewCommand(): Promise<Omit<CommandSpec, 'args'> | undefined> {
  for (const path of BREW_PATHS) {
    const owner = await stat(path).catch(() => undefined);
    if (!owner) continue;
    const asOwner = process.getuid?.() === 0 && owner.uid !== 0;
    return asOwner ? { command: path, env: { ...BREW_ENV, HOME: tmpdir() }, uid: owner.uid, gid: owner.gid } : { command: path, env: BREW_ENV };
  }
  return undefined;
}

/** Formulae (source "homebrew") and casks (source "homebrew-cask"); not available without Homebrew. */
export const homebrewCollector: InventoryCollector = {
  name: 'homebrew',
  async collect({ run }) {
    const brew = await brewCommand();
    if (!brew) return NOT_AVAILABLE;
    const formulae = await run({ ...brew, args: ['list', '--formula', '--versions'] });
    const casks = await run({ ...brew, args: ['list', '--cask', '--versions'] });
    if (formulae === NOT_AVAILABLE || casks === NOT_AVAILABLE) return NOT_AVAILABLE;
    return mergeParsed(parseBrewList(formulae, 'homebrew'), parseBrewList(casks, 'homebrew-cask'));
  },
};
