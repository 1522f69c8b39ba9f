import { migration015NameIndexPending } from '../015-name-index-pending.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration015NameIndexPending = mirroring(
  migration015NameIndexPending,
  `
CREATE TABLE software_name_pending (
  name     TEXT NOT NULL,
  host_id  TEXT NOT NULL
);
CREATE FUNCTION software_packages_name_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO software_name_pending (name, host_id) SELECT name, host_id FROM inserted_packages;
  RETURN NULL;
END;
$$;
-- Per statement: ON CONFLICT DO UPDATE puts only the rows it inserted in the INSERT trigger's transition table.
CREATE TRIGGER software_packages_name_pending AFTER INSERT ON software_packages
  REFERENCING NEW TABLE AS inserted_packages FOR EACH STATEMENT EXECUTE FUNCTION software_packages_name_pending();
INSERT INTO software_name_pending (name, host_id)
  SELECT DISTINCT name, host_id FROM software_packages p
  WHERE NOT EXISTS (SELECT 1 FROM software_name_index i WHERE i.name = p.name AND i.host_id = p.host_id);
DROP TABLE software_name_index_state;
`,
);
