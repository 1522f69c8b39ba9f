import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import type { AgentLogger } from '../log/logger.ts';
import type { MachineIdSource } from '../platform/machine-id/index.ts';

/**
 * SHA-256 (hex) of the machine identifier, so the raw id never leaves the host. With no
 * identifier the hostname stands in, which cannot tell clones apart: hence the warning.
 */
export function machineFingerprint(source: MachineIdSource | undefined, env: NodeJS.ProcessEnv, log: AgentLogger): string {
  const id = source?.read(env);
  if (id !== undefined) return sha256Hex(id);
  log.warn({ source: source?.name ?? 'none' }, 'no machine identifier found; fingerprinting the hostname instead');
  return sha256Hex(hostname());
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
