import { join } from 'node:path';

/** The spec's identity files inside data_dir. */
export interface IdentityPaths {
  readonly dataDir: string;
  readonly privateKey: string;
  readonly publicKey: string;
  readonly state: string;
}

export function identityPaths(dataDir: string): IdentityPaths {
  return Object.freeze({
    dataDir,
    privateKey: join(dataDir, 'agent_key.pem'),
    publicKey: join(dataDir, 'agent_key.pub'),
    state: join(dataDir, 'agent_state.json'),
  });
}
