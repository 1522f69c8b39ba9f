import { readFileSync } from 'node:fs';
import type { MachineIdSource } from './source.ts';

const PATHS = ['/etc/machine-id', '/var/lib/dbus/machine-id'];

/**
 * systemd's /etc/machine-id, else the older D-Bus copy. CT_OPS_MACHINE_ID_FILE replaces
 * both paths: tests point it at a temporary file to simulate cloned or distinct machines.
 */
export const linuxMachineId: MachineIdSource = {
  name: 'machine-id',
  read(env) {
    const candidates = env.CT_OPS_MACHINE_ID_FILE ? [env.CT_OPS_MACHINE_ID_FILE] : PATHS;
    for (const path of candidates) {
      try {
        const id = readFileSync(path, 'utf8').trim();
        if (id !== '') return id;
      } catch {
        // Absent or unreadable: try the next place.
      }
    }
    return undefined;
  },
};
