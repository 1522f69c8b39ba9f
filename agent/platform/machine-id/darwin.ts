import { execFileSync } from 'node:child_process';
import type { MachineIdSource } from './source.ts';

/** The IOPlatformUUID of the IOPlatformExpertDevice, as `ioreg` prints it. */
export const darwinMachineId: MachineIdSource = {
  name: 'IOPlatformUUID',
  read() {
    try {
      const output = execFileSync('ioreg', ['-rd1', '-c', 'IOPlatformExpertDevice'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
      return /"IOPlatformUUID"\s*=\s*"([^"]+)"/.exec(output)?.[1];
    } catch {
      return undefined;
    }
  },
};
