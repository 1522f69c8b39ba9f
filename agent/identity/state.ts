import { existsSync, readFileSync } from 'node:fs';
import type { AgentLogger } from '../log/logger.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import { jwtExpiry } from './jwt-expiry.ts';
import type { IdentityPaths } from './paths.ts';

/** The credential the appliance issued to this key: agent_state.json. */
export interface AgentCredential {
  readonly agentId: string;
  readonly jwt: string;
  /** From the file or the RegisterResponse, else the JWT's exp claim; undefined = unknown. */
  readonly jwtExpiresUnix: number | undefined;
}

/**
 * Reads agent_state.json. A missing file is normal (not yet approved); a damaged one is
 * warned about and treated as missing, so the agent registers again by its key and the
 * appliance returns the same agent_id.
 */
export function readAgentState(paths: IdentityPaths, log: AgentLogger): AgentCredential | undefined {
  if (!existsSync(paths.state)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(paths.state, 'utf8'));
  } catch (error) {
    log.warn({ path: paths.state, reason: (error as Error).message }, 'agent state file is damaged; registering again by key');
    return undefined;
  }
  const record = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const { agent_id: agentId, jwt, jwt_expires_unix: expires } = record;
  if (typeof agentId !== 'string' || agentId === '' || typeof jwt !== 'string' || jwt === '') {
    log.warn({ path: paths.state, reason: 'agent_id or jwt missing' }, 'agent state file is damaged; registering again by key');
    return undefined;
  }
  const jwtExpiresUnix = typeof expires === 'number' && expires > 0 ? expires : jwtExpiry(jwt);
  return { agentId, jwt, jwtExpiresUnix };
}

/** Saves the credential atomically, mode 0600: the JWT is a bearer secret. */
export function writeAgentState(paths: IdentityPaths, credential: AgentCredential): void {
  const record = { agent_id: credential.agentId, jwt: credential.jwt, jwt_expires_unix: credential.jwtExpiresUnix ?? 0 };
  writeFileAtomic(paths.state, `${JSON.stringify(record, null, 2)}\n`, 0o600);
}
