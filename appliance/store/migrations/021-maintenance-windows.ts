import type { Migration } from './index.ts';

/**
 * rollout_groups.maintenance_window: a group's optional weekly window in which its hosts are
 * offered the release (issue 12: "optional maintenance window per group"), as the canonical text
 * releases/maintenance-window.ts parses ("Mon-Fri 22:00-06:00 Europe/Berlin"); NULL: any time.
 */
export const migration021MaintenanceWindows: Migration = {
  version: 21,
  description: 'rollout_groups.maintenance_window: the hours a group is offered its release',
  sql: `
ALTER TABLE rollout_groups ADD COLUMN maintenance_window TEXT;
`,
};
