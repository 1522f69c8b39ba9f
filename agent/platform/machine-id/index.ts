import { darwinMachineId } from './darwin.ts';
import { linuxMachineId } from './linux.ts';
import type { MachineIdSource } from './source.ts';
import { windowsMachineId } from './windows.ts';

export type { MachineIdSource } from './source.ts';

/** The one place that picks the machine-id source for the running platform. */
export function machineIdSourceFor(platform: NodeJS.Platform): MachineIdSource | undefined {
  switch (platform) {
    case 'linux':
      return linuxMachineId;
    case 'darwin':
      return darwinMachineId;
    case 'win32':
      return windowsMachineId;
    default:
      return undefined;
  }
}
