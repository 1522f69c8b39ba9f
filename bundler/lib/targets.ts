/**
 * The six install targets and what differs between them: file names inside the
 * bundle and the paths agent.toml points at on the installed host
 * (docs/bundle-format.md, "agent.toml" and "Install layout").
 */
export const OPERATING_SYSTEMS = ['linux', 'darwin', 'windows'] as const;
export const ARCHITECTURES = ['x64', 'arm64'] as const;

export type TargetOs = (typeof OPERATING_SYSTEMS)[number];
export type TargetArch = (typeof ARCHITECTURES)[number];

export interface Target {
  readonly os: TargetOs;
  readonly arch: TargetArch;
}

export const ALL_TARGETS: readonly Target[] = OPERATING_SYSTEMS.flatMap((os) => ARCHITECTURES.map((arch) => ({ os, arch })));

export function isTargetOs(value: string): value is TargetOs {
  return (OPERATING_SYSTEMS as readonly string[]).includes(value);
}

export function isTargetArch(value: string): value is TargetArch {
  return (ARCHITECTURES as readonly string[]).includes(value);
}

/** "<os>-<arch>", the content of the TARGET file. */
export function targetName(target: Target): string {
  return `${target.os}-${target.arch}`;
}

/** The executable's name inside the bundle. */
export function executableName(os: TargetOs): string {
  return os === 'windows' ? 'ct-ops-agent.exe' : 'ct-ops-agent';
}

/** The executable's name in the release directory dist/agents/<version>/. */
export function releaseExecutableName(target: Target): string {
  return `ct-ops-agent-${targetName(target)}${target.os === 'windows' ? '.exe' : ''}`;
}

/** The release executable of a host with this os/arch (its registered platform), or undefined for a platform no release has. */
export function releaseExecutableOf(host: { readonly os: string; readonly arch: string }): string | undefined {
  return isTargetOs(host.os) && isTargetArch(host.arch) ? releaseExecutableName({ os: host.os, arch: host.arch }) : undefined;
}

/** The zip's top folder; the zip file is this plus ".zip". */
export function bundleBaseName(version: string, target: Target): string {
  return `ct-ops-agent-${version}-${targetName(target)}`;
}

/** Every bundle zip's file name (bundleBaseName + .zip): no directory part, so safe to join to a directory. */
export const BUNDLE_ZIP_NAME = /^ct-ops-agent-[0-9A-Za-z.+-]+-(?:linux|darwin|windows)-(?:x64|arm64)\.zip$/;

export interface HostPaths {
  readonly caCertFile: string;
  readonly dataDir: string;
}

/** Where the installed agent finds its CA and keeps its data, per docs/bundle-format.md. */
export function hostPaths(os: TargetOs): HostPaths {
  switch (os) {
    case 'linux':
      return { caCertFile: '/etc/ct-ops/ca.crt', dataDir: '/var/lib/ct-ops/agent' };
    case 'darwin':
      return { caCertFile: '/etc/ct-ops/ca.crt', dataDir: '/Library/Application Support/CT-Ops/agent' };
    case 'windows':
      return { caCertFile: 'C:\\ProgramData\\CT-Ops\\ca.crt', dataDir: 'C:\\ProgramData\\CT-Ops\\agent' };
  }
}
