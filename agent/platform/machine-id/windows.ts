import { execFileSync } from 'node:child_process';
import type { MachineIdSource } from './source.ts';

/** HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid, read through `reg query`. */
export const windowsMachineId: MachineIdSource = {
  name: 'MachineGuid',
  read() {
    try {
      const output = execFileSync('reg', ['query', 'HKLM\\SOFTWARE\\Microsoft\\Cryptography', '/v', 'MachineGuid'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'], windowsHide: true });
      return /MachineGuid\s+REG_SZ\s+(\S+)/.exec(output)?.[1];
    } catch {
      return undefined;
    }
  },
};
