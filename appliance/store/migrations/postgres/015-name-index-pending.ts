import { migration015NameIndexPending } from '../015-name-index-pending.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration015NameIndexPending = mirroring(
  migration015NameIndexPending,
  `
ALTER TABLE software_packages ADD COLUMN name_indexed SMALLINT NOT NULL DEFAULT 0 CHECK (name_indexed IN (0, 1));
UPDATE software_packages SET name_indexed = 1
  WHERE EXISTS (SELECT 1 FROM software_name_index i WHERE i.name = software_packages.name AND i.host_id = software_packages.host_id);
CREATE INDEX software_packages_name_pending ON software_packages(id) WHERE name_indexed = 0;
DROP TABLE software_name_index_state;
`,
);
