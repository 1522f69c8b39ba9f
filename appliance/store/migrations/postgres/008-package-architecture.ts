import { migration008PackageArchitecture } from '../008-package-architecture.ts';
import { mirroring } from './mirroring.ts';

/** PostgreSQL replaces the package key in place (SQLite had to rebuild the table); ids and the identity counter stay as they are. */
export const postgresMigration008PackageArchitecture = mirroring(migration008PackageArchitecture, `
ALTER TABLE software_scans ADD COLUMN skipped TEXT NOT NULL DEFAULT '[]';
ALTER TABLE software_packages DROP CONSTRAINT software_packages_identity;
ALTER TABLE software_packages ADD CONSTRAINT software_packages_identity UNIQUE (host_id, name, version, source, architecture);
`);
