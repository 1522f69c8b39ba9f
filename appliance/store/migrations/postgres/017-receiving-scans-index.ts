import { migration017ReceivingScansIndex } from '../017-receiving-scans-index.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration017ReceivingScansIndex = mirroring(
  migration017ReceivingScansIndex,
  `
CREATE INDEX software_scans_receiving ON software_scans(updated_at) WHERE status = 'receiving';
`,
);
