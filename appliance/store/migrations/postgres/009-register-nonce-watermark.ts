import { migration009RegisterNonceWatermark } from '../009-register-nonce-watermark.ts';
import { mirroring } from './mirroring.ts';

export const postgresMigration009RegisterNonceWatermark = mirroring(migration009RegisterNonceWatermark, `
CREATE TABLE register_nonce_watermark (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  pruned_through  BIGINT NOT NULL
);
INSERT INTO register_nonce_watermark (id, pruned_through) VALUES (1, 0);
`);
