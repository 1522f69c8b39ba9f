import { X509Certificate, createPrivateKey, sign } from 'node:crypto';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { trustBundlePayload, type TrustBundle } from '../../common/trust-bundle.ts';
import { CA_CERT_FILE, CA_NEXT_CERT_FILE } from '../lib/data-dir-files.ts';
import { CA_KEY_FILE, CA_NEXT_KEY_FILE, certificateFingerprint, createCa, keyMatchesCertificate, readCaPair, type CaPair } from './certificates.ts';
import { PUBLIC_FILE_MODE, SECRET_FILE_MODE, readIfExists, writeFileAtomic } from './files.ts';
import { readCaRotation, writeCaRotation, type CaRotationPhase, type CaRotationRecord } from './rotation-file.ts';

/** The admin's commands: `certs rotate-ca start|switch|finish`. */
export type CaRotationStep = 'start' | 'switch' | 'finish';

const STEP_FROM: Readonly<Record<CaRotationStep, { from: CaRotationPhase; to: CaRotationPhase }>> = {
  start: { from: 'standby', to: 'update-clients' },
  switch: { from: 'update-clients', to: 'update-servers' },
  finish: { from: 'update-servers', to: 'standby' },
};

/**
 * Pure: the phase `step` leads to from `phase`. A step out of order is ERR_CA_ROTATION_STATE;
 * `switch` while active hosts have not confirmed the bundle (`unacknowledged`, host ids) is
 * ERR_CA_ROTATION_UNACKNOWLEDGED unless forced: the server certificate of the next CA would cut them off.
 * The refusal also names the `pending` hosts (not approved, so sent no bundle), which only a bundle
 * built after `start` or an approval before the switch keeps connected.
 */
export function nextPhase(phase: CaRotationPhase, step: CaRotationStep, inputs: { unacknowledged: readonly string[]; pending: readonly string[]; force: boolean }): CaRotationPhase | CtOpsError {
  const rule = STEP_FROM[step];
  if (phase !== rule.from) {
    return new CtOpsError('ERR_CA_ROTATION_STATE', `\`certs rotate-ca ${step}\` needs the rotation in phase ${rule.from}; it is in phase ${phase}`, { phase, step });
  }
  if (step === 'switch' && inputs.unacknowledged.length > 0 && !inputs.force) {
    const shown = inputs.unacknowledged.slice(0, 20);
    const pending = inputs.pending.slice(0, 20);
    const pendingText = pending.length === 0 ? '' : `; ${inputs.pending.length} pending host(s) get no bundle until approved: ${pending.join(', ')}${inputs.pending.length > pending.length ? ', …' : ''}`;
    return new CtOpsError(
      'ERR_CA_ROTATION_UNACKNOWLEDGED',
      `${inputs.unacknowledged.length} active host(s) have not confirmed the trust bundle with the next CA: ${shown.join(', ')}${inputs.unacknowledged.length > shown.length ? ', …' : ''}${pendingText}. Wait until they stream, or pass --force to cut them off`,
      { hosts: shown.join(', '), count: inputs.unacknowledged.length, pending: inputs.pending.length },
    );
  }
  return rule.to;
}

/**
 * Performs the effects of entering `next` from `record` and returns the new record:
 * - update-clients: creates the next CA (ca-next.key 0600, ca-next.crt) and the bundle
 *   {current, next}, signed by the current CA's key, its generation the issue time in ms (one more than the last when the clock has not passed it).
 * - update-servers: records the phase; the caller then issues the server certificate (ensureTlsMaterial
 *   issues it from the next CA in this phase, also after a restart) and serves it.
 * - standby (finish): the bundle {next}, signed by the next CA's key (agents trust it already), is
 *   recorded first; then the next CA becomes ca.crt/ca.key (completeFinish).
 * Throws ERR_DATA_DIR_UNUSABLE.
 */
export async function enterPhase(dataDir: string, record: CaRotationRecord, next: CaRotationPhase, now: Date): Promise<CaRotationRecord> {
  // The issue time: newer than any bundle this data directory issued before, also after it was restored from a backup (decisions.md 77).
  const generation = Math.max(now.getTime(), (record.bundle?.generation ?? 0) + 1);
  switch (next) {
    case 'update-clients': {
      const current = readCaPair(dataDir, CA_CERT_FILE, CA_KEY_FILE);
      const nextCa = await createCa(now);
      // The certificate first: a key without its certificate beside it is never taken for a finished rotation's (isFinishedCa).
      writeFileAtomic(join(dataDir, CA_NEXT_CERT_FILE), nextCa.certPem, PUBLIC_FILE_MODE);
      writeFileAtomic(join(dataDir, CA_NEXT_KEY_FILE), nextCa.keyPem, SECRET_FILE_MODE);
      return recorded(dataDir, { phase: next, bundle: signedBundle(generation, [current.certPem, nextCa.certPem], current) });
    }
    case 'update-servers':
      return recorded(dataDir, { phase: next, bundle: record.bundle });
    case 'standby': {
      const nextCa = readCaPair(dataDir, CA_NEXT_CERT_FILE, CA_NEXT_KEY_FILE);
      const finished = recorded(dataDir, { phase: next, bundle: signedBundle(generation, [nextCa.certPem], nextCa) });
      completeFinish(dataDir, finished, now);
      return finished;
    }
  }
}

/**
 * A stop between the steps of `start` or `finish` leaves a next CA file beside a standby record: when
 * the recorded bundle is exactly the next CA, the finish was under way and is completed; otherwise
 * a start never recorded its CA, which no agent was sent, and it is removed.
 */
export function settleInterruptedRotation(dataDir: string, log: Logger, now: Date): void {
  const record = readCaRotation(dataDir);
  const nextCertPath = join(dataDir, CA_NEXT_CERT_FILE);
  const nextKeyPath = join(dataDir, CA_NEXT_KEY_FILE);
  if (record.phase !== 'standby' || (!existsSync(nextKeyPath) && !existsSync(nextCertPath))) return;
  if (isFinishedCa(dataDir, record)) {
    completeFinish(dataDir, record, now);
    log.warn({ data_dir: dataDir }, 'completed a CA rotation finish that a stop interrupted');
  } else {
    rmSync(nextKeyPath, { force: true });
    rmSync(nextCertPath, { force: true });
    log.warn({ data_dir: dataDir }, 'removed the next CA of a rotation start that a stop interrupted before it was recorded');
  }
}

/**
 * True when the standby record's bundle is the CA in ca-next.crt alone. Only ca-next.crt counts: ca.crt
 * equals a finished bundle after every completed rotation, so a start stopped before it wrote
 * ca-next.crt would otherwise pass for a finish and its stray key be renamed over ca.key.
 */
function isFinishedCa(dataDir: string, record: CaRotationRecord): boolean {
  if (record.bundle?.caPems.length !== 1) return false;
  const candidate = readIfExists(join(dataDir, CA_NEXT_CERT_FILE));
  return candidate !== undefined && certificateFingerprint(candidate) === certificateFingerprint(record.bundle.caPems[0]!);
}

/**
 * The next CA becomes the CA; repeatable, so a stop part-way is completed at the next start. The
 * retired certificate is kept as ca-retired-<time>.crt (public, for audit: which CA agents trusted
 * until when); its KEY is deleted, overwritten by the rename: nothing it signed is trusted any more,
 * and a kept key is only something more to steal — when the rotation answers a compromise, it must
 * not survive it (decisions.md 73).
 */
function completeFinish(dataDir: string, record: CaRotationRecord, now: Date): void {
  const nextKey = readIfExists(join(dataDir, CA_NEXT_KEY_FILE));
  const nextCert = readIfExists(join(dataDir, CA_NEXT_CERT_FILE));
  if (nextKey !== undefined && (nextCert === undefined || !keyMatchesCertificate(nextCert, nextKey))) {
    // Renaming it would destroy the CA key that still signs: refuse and leave every file as it is for the admin.
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${join(dataDir, CA_NEXT_KEY_FILE)} is not the key of ${join(dataDir, CA_NEXT_CERT_FILE)}; the CA rotation cannot finish`, { path: join(dataDir, CA_NEXT_KEY_FILE) });
  }
  const current = readIfExists(join(dataDir, CA_CERT_FILE));
  const finishedFingerprint = certificateFingerprint(record.bundle!.caPems[0]!);
  if (current !== undefined && certificateFingerprint(current) !== finishedFingerprint) {
    const stamp = now.toISOString().replace(/[-:]/g, '').slice(0, 15);
    writeFileAtomic(join(dataDir, `ca-retired-${stamp}.crt`), current, PUBLIC_FILE_MODE);
  }
  try {
    // The key first: a stop in between leaves ca-next.crt, which isFinishedCa still recognises.
    if (nextKey !== undefined) renameSync(join(dataDir, CA_NEXT_KEY_FILE), join(dataDir, CA_KEY_FILE));
    if (nextCert !== undefined) renameSync(join(dataDir, CA_NEXT_CERT_FILE), join(dataDir, CA_CERT_FILE));
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot make the next CA the CA in ${dataDir}: ${(cause as Error).message}`, { path: dataDir }, { cause });
  }
}

function signedBundle(generation: number, caPems: readonly string[], signer: CaPair): TrustBundle {
  const payload = trustBundlePayload(generation, caPems.map((pem) => new X509Certificate(pem)));
  return { generation, caPems, signature: sign('sha256', payload, createPrivateKey(signer.keyPem)) };
}

function recorded(dataDir: string, record: CaRotationRecord): CaRotationRecord {
  writeCaRotation(dataDir, record);
  return record;
}
