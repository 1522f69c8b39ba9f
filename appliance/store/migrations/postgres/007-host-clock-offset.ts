import { migration007HostClockOffset } from '../007-host-clock-offset.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration007HostClockOffset = mirroring(migration007HostClockOffset, `
ALTER TABLE hosts ADD COLUMN clock_offset_ms BIGINT;
`);
