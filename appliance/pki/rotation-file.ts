import { join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import type { TrustBundle } from '../../common/trust-bundle.ts';
import { PUBLIC_FILE_MODE, readIfExists, writeFileAtomic } from './files.ts';

/**
 * Where a CA rotation stands (Teleport's init → update clients → update servers → standby, kept simple):
 * - standby: one CA (ca.crt) issues the server certificate; no rotation in progress.
 * - update-clients: the next CA exists (ca-next.crt/.key); agents are sent the bundle {current, next}.
 * - update-servers: the server certificate is issued by the next CA; agents holding the bundle trust it.
 */
export type CaRotationPhase = 'standby' | 'update-clients' | 'update-servers';

/** ca-rotation.json read: the phase, and the bundle agents are to hold in it. */
export interface CaRotationRecord {
  readonly phase: CaRotationPhase;
  /** The bundle agents are to hold; undefined until the first rotation (agents trust their ca_cert_file). */
  readonly bundle: TrustBundle | undefined;
}

/** ca-rotation.json (0644: it holds certificates and a signature, nothing secret). */
export const CA_ROTATION_FILE = 'ca-rotation.json';

interface CaRotationJson {
  phase: CaRotationPhase;
  bundle: { generation: number; ca_pems: string[]; signature: string } | null;
}

const PHASES: readonly CaRotationPhase[] = ['standby', 'update-clients', 'update-servers'];

/** The rotation record; standby with no bundle when the file does not exist. Throws ERR_DATA_DIR_UNUSABLE when it is damaged. */
export function readCaRotation(dataDir: string): CaRotationRecord {
  const path = join(dataDir, CA_ROTATION_FILE);
  const text = readIfExists(path);
  if (text === undefined) return { phase: 'standby', bundle: undefined };
  try {
    const json = JSON.parse(text) as CaRotationJson;
    if (!PHASES.includes(json.phase)) throw new Error(`unknown phase ${String(json.phase)}`);
    const bundle = json.bundle && { generation: json.bundle.generation, caPems: json.bundle.ca_pems, signature: Buffer.from(json.bundle.signature, 'base64') };
    return { phase: json.phase, bundle: bundle ?? undefined };
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${path} is damaged: ${(cause as Error).message}`, { path }, { cause });
  }
}

/** Replaces the rotation record atomically. Throws ERR_DATA_DIR_UNUSABLE. */
export function writeCaRotation(dataDir: string, record: CaRotationRecord): void {
  const json: CaRotationJson = {
    phase: record.phase,
    bundle: record.bundle ? { generation: record.bundle.generation, ca_pems: [...record.bundle.caPems], signature: Buffer.from(record.bundle.signature).toString('base64') } : null,
  };
  writeFileAtomic(join(dataDir, CA_ROTATION_FILE), `${JSON.stringify(json, null, 2)}\n`, PUBLIC_FILE_MODE);
}
