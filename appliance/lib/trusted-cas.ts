import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CA_CERT_FILE, CA_NEXT_CERT_FILE } from './data-dir-files.ts';

/**
 * The PEM of every CA a client of the appliance is to trust now: ca.crt, and during a CA rotation
 * the next CA too (ca-next.crt), whose server certificate the appliance serves once switched. The
 * admin CLI trusts these, and bundles built during the overlap carry them as the agents' ca.crt.
 * Throws the fs error when ca.crt cannot be read.
 */
export function readTrustedCaPems(dataDir: string): string {
  const current = readFileSync(join(dataDir, CA_CERT_FILE), 'utf8');
  let next = '';
  try {
    next = readFileSync(join(dataDir, CA_NEXT_CERT_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return `${current.trimEnd()}\n${next ? `${next.trimEnd()}\n` : ''}`;
}
