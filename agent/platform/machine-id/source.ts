/** Where a platform keeps a stable per-installation machine identifier. */
export interface MachineIdSource {
  /** Describes the source for logs ("/etc/machine-id", "IOPlatformUUID", ...). */
  readonly name: string;
  /** The identifier, or undefined when this machine does not have one. */
  read(env: NodeJS.ProcessEnv): string | undefined;
}
