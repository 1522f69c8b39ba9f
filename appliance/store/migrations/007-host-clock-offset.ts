import type { Migration } from './index.ts';

/**
 * Each host's clock offset (the agent's clock minus the appliance's when a heartbeat arrived, ms;
 * NULL until a heartbeat carried the agent's time), shown in `hosts list/show`.
 */
export const migration007HostClockOffset: Migration = {
  version: 7,
  description: 'hosts: clock_offset_ms',
  sql: `
ALTER TABLE hosts ADD COLUMN clock_offset_ms INTEGER;
`,
};
