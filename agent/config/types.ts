import type { PublicKey } from '../../common/minisign.ts';
import type { IngestAddress } from './address.ts';

/** The validated, frozen agent configuration: the only form the rest of the agent sees. */
export interface AgentConfig {
  /** Absolute path of the TOML file, re-read on a config_reload command. */
  readonly configFile: string;
  readonly ingest: {
    /**
     * The ingest addresses in the order the agent tries them ([ingest] address is a list of one;
     * at least one, at most MAX_INGEST_ADDRESSES). All are instances of one appliance, verified
     * against the same trust (decisions.md 120).
     */
    readonly addresses: readonly IngestAddress[];
    /** Absolute path of ca_cert_file, or undefined to trust the system roots. */
    readonly caCertFile: string | undefined;
    /** Its PEM text, read once at load so a later unreadable file cannot surprise a reconnect. */
    readonly caPem: string | undefined;
  };
  /** The enrolment token; '' when none is configured. */
  readonly orgToken: string;
  readonly dataDir: string;
  /** [agent] version as written in the file; the agent always reports PRODUCT_VERSION. */
  readonly configuredVersion: string | undefined;
  readonly heartbeatIntervalSecs: number;
  readonly tags: Readonly<Record<string, string>>;
  /** [agent] install_bundle_id: the bundle this agent was installed from (a bnd_… id, written by the bundler); '' when absent. */
  readonly installBundleId: string;
  /**
   * The agent release key self-update verifies every offered release with ([update]
   * release_public_key, the appliance's release.pub written by the bundler); undefined: no update is taken.
   */
  readonly releaseKey: PublicKey | undefined;
}

export interface LoadedConfig {
  readonly config: AgentConfig;
  /** Problems worth a WARN log that do not stop the agent (unknown keys, version mismatch). */
  readonly warnings: readonly string[];
}
