import { migration010IdentityResolvedAt } from '../010-identity-resolved-at.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration010IdentityResolvedAt = mirroring(migration010IdentityResolvedAt, `ALTER TABLE hosts ADD COLUMN identity_resolved_at BIGINT;`);
