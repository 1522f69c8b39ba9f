import { migration018ReceivingScansIndex } from '../018-receiving-scans-index.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration018ReceivingScansIndex = mirroring(
  migration018ReceivingScansIndex,
  `
CREATE INDEX software_scans_receiving ON software_scans(updated_at) WHERE status = 'receiving';
`,
);
