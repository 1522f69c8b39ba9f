import { join } from 'node:path';

/** The spec's identity files inside data_dir. */
export interface IdentityPaths {
  readonly dataDir: string;
  readonly privateKey: string;
  readonly publicKey: string;
  readonly state: string;
  /** The private key of an identity the appliance retired, kept until its successor is enrolled. */
  readonly retiredKey: string;
  /** A key rotation in progress: the new key and the appliance's nonce (identity/rotation.ts). */
  readonly rotation: string;
}

export function identityPaths(dataDir: string): IdentityPaths {
  return Object.freeze({
    dataDir,
    privateKey: join(dataDir, 'agent_key.pem'),
    publicKey: join(dataDir, 'agent_key.pub'),
    state: join(dataDir, 'agent_state.json'),
    retiredKey: join(dataDir, 'retired_agent_key.pem'),
    rotation: join(dataDir, 'key_rotation.json'),
  });
}
