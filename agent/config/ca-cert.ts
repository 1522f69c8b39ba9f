import { readFileSync } from 'node:fs';
import { decodeConfigText } from '../../common/config-file.ts';
import { CtOpsError } from '../../common/errors.ts';

/**
 * Reads the CA bundle named by ca_cert_file; `where` names the key or env var that set it.
 * Throws ERR_CONFIG_UNREADABLE, or ERR_CONFIG_INVALID when it is not UTF-8 (saved as
 * UTF-16 by a Windows editor: common/config-file.ts names the encoding) or holds no PEM certificate.
 */
export function readCaCertificate(path: string, where: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code ?? (cause as Error).message;
    throw new CtOpsError('ERR_CONFIG_UNREADABLE', `${where}: cannot read CA certificate ${path} (${reason})`, { where, path }, { cause });
  }
  const pem = decodeConfigText(bytes, path);
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, { where, path });
  }
  return pem;
}
