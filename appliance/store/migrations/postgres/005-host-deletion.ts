import { migration005HostDeletion } from '../005-host-deletion.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration005HostDeletion = mirroring(migration005HostDeletion, `
ALTER TABLE hosts ADD COLUMN deleted_at BIGINT;
ALTER TABLE hosts ADD COLUMN deleted_by TEXT;
`);
