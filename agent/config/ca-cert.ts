import { readFileSync } from 'node:fs';
import { CtOpsError } from '../../common/errors.ts';

/** Reads the CA bundle named by ca_cert_file; `where` names the key or env var that set it. */
export function readCaCertificate(path: string, where: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw new CtOpsError('ERR_CONFIG_UNREADABLE', `${where}: cannot read CA certificate ${path} (${reason})`, { where, path }, { cause });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, { where, path });
  }
  return pem;
}
