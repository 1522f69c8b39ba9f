import { InventoryError } from '../errors.ts';
import { parseUninstallKeys } from '../parse/reg.ts';
import { NOT_AVAILABLE } from '../run.ts';
import type { CollectContext, InventoryCollector } from './collector.ts';

const UNINSTALL_64 = 'HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall';
const UNINSTALL_32 = 'HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall';

/** `reg query` fails this way when a key does not exist (WOW6432Node on 32-bit Windows). */
function isMissingKey(error: unknown): boolean {
  return error instanceof InventoryError && error.details.exit_code === 1 && /unable to find/i.test(String(error.details.stderr ?? ''));
}

/** /reg:64 reads the 64-bit view even when this process is 32-bit (no silent redirection). */
async function queryUninstall(run: CollectContext['run'], key: string, optional: boolean): Promise<string | typeof NOT_AVAILABLE> {
  try {
    return await run({ command: 'reg', args: ['query', key, '/s', '/reg:64'] });
  } catch (error) {
    if (optional && isMissingKey(error)) return '';
    throw error;
  }
}

/**
 * Programs and Features, from the machine-wide Uninstall keys: the native view (architecture
 * left unknown: x64 or arm64) and the 32-bit programs under WOW6432Node ("x86").
 */
export const windowsRegistryCollector: InventoryCollector = {
  name: 'windows-registry',
  async collect({ run }) {
    const native = await queryUninstall(run, UNINSTALL_64, false);
    if (native === NOT_AVAILABLE) return NOT_AVAILABLE;
    const wow = await queryUninstall(run, UNINSTALL_32, true);
    if (wow === NOT_AVAILABLE) return NOT_AVAILABLE;
    return parseUninstallKeys([{ text: native, architecture: '' }, { text: wow, architecture: 'x86' }]);
  },
};
