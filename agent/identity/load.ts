import { mkdirSync, rmSync, existsSync } from 'node:fs';
import { CtOpsError } from '../../common/errors.ts';
import type { AgentLogger } from '../log/logger.ts';
import { loadOrCreateKeys, type AgentKeys } from './keys.ts';
import { identityPaths, type IdentityPaths } from './paths.ts';
import { readRetiredKeys } from './retire.ts';
import { readKeyRotation, type PendingRotation } from './rotation.ts';
import { readAgentState, type AgentCredential } from './state.ts';

export interface AgentIdentity {
  readonly paths: IdentityPaths;
  readonly keys: AgentKeys;
  /** The saved credential, if agent_state.json exists and is readable. */
  readonly credential: AgentCredential | undefined;
  /** The key of a retired identity whose successor (this key) is not yet enrolled: it signs the proof. */
  readonly predecessor: AgentKeys | undefined;
  /** A key rotation the appliance asked for and has not confirmed yet: completed before anything else. */
  readonly rotation: PendingRotation | undefined;
}

/** Prepares data_dir (0700) and loads or creates the identity kept in it. */
export function loadIdentity(dataDir: string, log: AgentLogger): AgentIdentity {
  const paths = identityPaths(dataDir);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot create data_dir ${dataDir}: ${(cause as Error).message}`, { path: dataDir }, { cause });
  }
  const { keys, created } = loadOrCreateKeys(paths, log);
  if (created && existsSync(paths.state)) {
    // A credential without its private key belongs to an identity that no longer exists.
    log.warn({ path: paths.state }, 'agent state belongs to a deleted key; discarding it');
    rmSync(paths.state, { force: true });
  }
  return { paths, keys, credential: readAgentState(paths, log), predecessor: readRetiredKeys(paths), rotation: readKeyRotation(paths) };
}
