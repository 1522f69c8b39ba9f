import { migration021MaintenanceWindows } from '../021-maintenance-windows.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration021MaintenanceWindows = mirroring(
  migration021MaintenanceWindows,
  `
ALTER TABLE rollout_groups ADD COLUMN maintenance_window TEXT;
`,
);
