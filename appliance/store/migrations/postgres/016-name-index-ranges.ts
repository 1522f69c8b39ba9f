import { migration016NameIndexRanges } from '../016-name-index-ranges.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration016NameIndexRanges = mirroring(
  migration016NameIndexRanges,
  `
INSERT INTO software_name_index (name, host_id)
  SELECT DISTINCT name, host_id FROM software_name_pending ORDER BY name, host_id
  ON CONFLICT (name, host_id) DO NOTHING;
DROP TRIGGER software_packages_name_pending ON software_packages;
DROP FUNCTION software_packages_name_pending();
DROP TABLE software_name_pending;
CREATE TABLE software_name_pending_ranges (
  host_id   TEXT NOT NULL,
  first_id  BIGINT NOT NULL,
  last_id   BIGINT NOT NULL,
  CHECK (first_id <= last_id)
);
`,
);
