// Stages the top folder of an appliance image (the layout of docs/operations.md,
// "Building the appliance image"): it mirrors the repository, so common/package-root.ts
// and bundler/lib/paths.ts find dist/agents/ and the templates unchanged.
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { byName, formatSha256Sums, sha256File } from '../../bundler/lib/sha256sums.ts';
import { blake2b512File, keyIdHex, publicKeyFile, signDigest } from '../../common/minisign.ts';
import { buildConsoleAssets } from '../console-assets.mjs';
import { bundleForImage } from './bundle.mjs';
import { BuildImageError } from './errors.mjs';

const run = promisify(execFile);

/** The bundle templates a bundle build reads (bundler/lib/paths.ts defaultTemplatesDir). */
const TEMPLATE_DIRS = ['installers', 'systemd', 'launchd', 'windows'];
/** The appliance's own installer, from the repository's image/ folder when it is there. */
const INSTALLER_FILES = ['install.sh', 'uninstall.sh'];
/** The programs of the image: bin/<name> runs dist/<name>.js (image/launcher.sh). */
export const LAUNCHERS = ['ct-ops-appliance', 'ct-ops-bundle'];
/** Files README.md gives the sha256 of, for a reader who checks by hand. */
const KEY_FILES = ['runtime/bin/node', 'dist/better_sqlite3.node', 'dist/ct-ops-appliance.js', 'dist/ct-ops-bundle.js'];

/** ct-ops-appliance-<version>-linux-<arch>: the tarball's name and its one top folder. */
export function imageName(version, arch) {
  return `ct-ops-appliance-${version}-linux-${arch}`;
}

/**
 * Every file and folder under dir, relative to it, sorted byte-wise (a folder before its
 * content); the modes normalised on disk as they go into the tarball: 0755 for folders and
 * files executable by their owner, 0644 for the rest. Symlinks are refused: an image has none.
 * @returns {{ path: string, type: 'file' | 'directory', mode: number }[]}
 */
export function normalisedEntries(dir, prefix = '') {
  const entries = [];
  for (const name of readdirSync(join(dir, prefix)).sort(byName)) {
    const path = prefix === '' ? name : `${prefix}/${name}`;
    const stat = lstatSync(join(dir, path));
    if (stat.isDirectory()) {
      chmodSync(join(dir, path), 0o755);
      entries.push({ path, type: 'directory', mode: 0o755 });
      entries.push(...normalisedEntries(dir, path));
    } else if (stat.isFile()) {
      const mode = stat.mode & 0o100 ? 0o755 : 0o644;
      chmodSync(join(dir, path), mode);
      entries.push({ path, type: 'file', mode });
    } else {
      throw new BuildImageError('ERR_TOOL_FAILED', `${join(dir, path)} is neither a file nor a folder; an image holds only those`);
    }
  }
  return entries;
}

/** The newest GLIBC_ / GLIBCXX_ symbol versions an ELF file needs, from objdump -T: { glibc: 'GLIBC_2.28', glibcxx: 'GLIBCXX_3.4.21' }. */
async function elfRequirements(objdump, file) {
  const { stdout } = await run(objdump, ['-T', file], { maxBuffer: 256 * 1024 * 1024 });
  const newest = (prefix) =>
    [...new Set(stdout.match(new RegExp(`\\b${prefix}_[0-9.]+\\b`, 'g')) ?? [])]
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
      .at(-1);
  return { glibc: newest('GLIBC'), glibcxx: newest('GLIBCXX') };
}

/**
 * Releases of the common glibc distributions, oldest first per family, with the glibc and libstdc++
 * symbol versions they provide (their glibc and libstdc++6 packages: Debian and Ubuntu package
 * pages, RHEL's release notes). The README names the oldest release of each family that has both.
 */
const DISTRIBUTIONS = [
  ['Debian', [['10', 'GLIBC_2.28', 'GLIBCXX_3.4.25'], ['11', 'GLIBC_2.31', 'GLIBCXX_3.4.28'], ['12', 'GLIBC_2.36', 'GLIBCXX_3.4.30'], ['13', 'GLIBC_2.41', 'GLIBCXX_3.4.33']]],
  ['Ubuntu', [['20.04', 'GLIBC_2.31', 'GLIBCXX_3.4.28'], ['22.04', 'GLIBC_2.35', 'GLIBCXX_3.4.30'], ['24.04', 'GLIBC_2.39', 'GLIBCXX_3.4.33']]],
  ['RHEL', [['8', 'GLIBC_2.28', 'GLIBCXX_3.4.25'], ['9', 'GLIBC_2.34', 'GLIBCXX_3.4.29'], ['10', 'GLIBC_2.39', 'GLIBCXX_3.4.33']]],
];

/** "Debian 12, Ubuntu 22.04, RHEL 9 or newer": the oldest release per family providing both symbol versions. */
function oldestSupported({ glibc, glibcxx }) {
  const names = DISTRIBUTIONS.flatMap(([family, releases]) => {
    const release = releases.find(([, has, hasCxx]) => newer(has, glibc) === has && newer(hasCxx, glibcxx) === hasCxx);
    return release ? [`${family} ${release[0]}`] : [];
  });
  return names.length > 0 ? `${names.join(', ')} or newer` : 'newer than any release this build knows of';
}

/** Newest of two symbol version names such as GLIBC_2.28 (undefined counts as older). */
function newer(a, b) {
  if (!a || !b) return a ?? b;
  return a.localeCompare(b, 'en', { numeric: true }) >= 0 ? a : b;
}

function readmeText({ version, arch, topName, releaseKey, keyLabel, requirements, keyFileSums, agentFiles, hasInstaller }) {
  const publicKeyLine = releaseKey.publicLine;
  return `# CT-Ops appliance ${version} for Linux ${arch}

${topName}/ is the whole appliance: its own Node.js (runtime/bin/node), the appliance and
ct-ops-bundle with every package inside (dist/), the better-sqlite3 addon built for that Node
and CPU (dist/better_sqlite3.node), the signed agent release (dist/agents/${version}/: six
executables and the Windows service wrapper), the bundle templates and the installer. Nothing
is fetched at run time; the host needs no Node.js.

Host requirement: Linux on ${arch === 'x64' ? 'x86-64' : 'AArch64 (ARMv8)'} with glibc and libstdc++ providing the newest symbol
versions the image's ELF files need (objdump -T): ${requirements.glibc} and ${requirements.glibcxx}. Node.js itself needs
${requirements.node.glibc} and ${requirements.node.glibcxx}; the rest comes from the better-sqlite3 addon, compiled with
the build machine's toolchain. That is ${oldestSupported(requirements)}. musl (Alpine) is not supported.

## Verify before you install

Signed with the ${keyLabel} release key ${releaseKey.id}. Its public key line is

    ${publicKeyLine}

Compare it with the line published out of band (not with release.pub shipped next to the image:
whoever could change the image could change that too). Then, in ${topName}/:

    minisign -Vm SHA256SUMS -P ${publicKeyLine}
    sha256sum -c SHA256SUMS

The same key signs the agent release: dist/agents/${version}/SHA256SUMS.minisig.

## Install

${hasInstaller ? '    sudo ./install.sh --help' : 'This build has no install.sh (the repository it was built from had no image/install.sh).'}

## sha256 of the main parts

${keyFileSums.map(({ name, sha256 }) => `    ${sha256}  ${name}`).join('\n')}

Agent release files: ${agentFiles.join(', ')}.
`;
}

/**
 * Writes the top folder <stagingDir>/<topName>/ for one CPU: everything of the image but
 * its inner SHA256SUMS and signature (signImageFiles). Returns what the tarball and the
 * OCI archive are made from.
 * @param {{
 *   root: string, stagingDir: string, version: string, arch: 'x64' | 'arm64',
 *   nodePackageDir: string, nodeVersion: string, addon: string, agentsDir: string,
 *   releaseKey: { key: import('../../common/minisign.ts').SigningKey, label: string },
 * }} options
 * @returns {Promise<{ stagingDir: string, topName: string, topDir: string, requirements: { glibc: string, glibcxx: string, node: { glibc: string, glibcxx: string } } }>}
 *   requirements: the newest glibc / libstdc++ symbol versions of the image, and of its Node alone
 */
export async function stageTopFolder({ root, stagingDir, version, arch, nodePackageDir, nodeVersion, addon, agentsDir, releaseKey }) {
  const topName = imageName(version, arch);
  const topDir = join(stagingDir, topName);
  mkdirSync(join(topDir, 'bin'), { recursive: true });
  mkdirSync(join(topDir, 'runtime/bin'), { recursive: true });
  mkdirSync(join(topDir, 'dist/agents'), { recursive: true });

  writeFileSync(join(topDir, 'package.json'), `${JSON.stringify({ name: 'ct-ops-appliance', version, type: 'module', private: true }, null, 2)}\n`);
  for (const name of LAUNCHERS) {
    copyFileSync(join(root, 'image/launcher.sh'), join(topDir, 'bin', name));
    chmodSync(join(topDir, 'bin', name), 0o755);
  }
  copyFileSync(join(nodePackageDir, 'bin/node'), join(topDir, 'runtime/bin/node'));
  chmodSync(join(topDir, 'runtime/bin/node'), 0o755);
  copyFileSync(join(nodePackageDir, 'LICENSE'), join(topDir, 'runtime/LICENSE'));
  await bundleForImage({ root, topDir, version, nodeVersion });
  copyFileSync(addon, join(topDir, 'dist/better_sqlite3.node'));
  // The admin console's browser assets, served by the appliance itself (appliance/console/assets.ts).
  await buildConsoleAssets({ root, outDir: join(topDir, 'dist/console') });
  cpSync(agentsDir, join(topDir, 'dist/agents', version), { recursive: true });
  for (const dir of TEMPLATE_DIRS) cpSync(join(root, dir), join(topDir, dir), { recursive: true });
  const installerFiles = INSTALLER_FILES.filter((file) => existsSync(join(root, 'image', file)));
  for (const file of installerFiles) copyFileSync(join(root, 'image', file), join(topDir, file));

  const objdump = arch === 'x64' ? 'objdump' : 'aarch64-linux-gnu-objdump';
  let requirements;
  try {
    const node = await elfRequirements(objdump, join(topDir, 'runtime/bin/node'));
    const addonNeeds = await elfRequirements(objdump, join(topDir, 'dist/better_sqlite3.node'));
    requirements = { glibc: newer(node.glibc, addonNeeds.glibc), glibcxx: newer(node.glibcxx, addonNeeds.glibcxx), node };
  } catch (error) {
    throw new BuildImageError('ERR_TOOL_MISSING', `${objdump} cannot read the image's executables (binutils${arch === 'arm64' ? '-aarch64-linux-gnu' : ''}): ${error.message}`, { cause: error });
  }
  const keyFileSums = [];
  for (const name of KEY_FILES) keyFileSums.push({ name, sha256: await sha256File(join(topDir, name)) });
  const publicLine = publicKeyFile(releaseKey.key).trim().split('\n').at(-1);
  writeFileSync(
    join(topDir, 'README.md'),
    readmeText({
      version, arch, topName, requirements, keyFileSums,
      releaseKey: { id: keyIdHex(releaseKey.key.keyId), publicLine },
      keyLabel: releaseKey.label,
      agentFiles: readdirSync(agentsDir).sort(byName),
      hasInstaller: installerFiles.includes('install.sh'),
    }),
  );
  return { stagingDir, topName, topDir, requirements };
}

/**
 * Writes SHA256SUMS (the given { name, sha256 }, sorted by name) and SHA256SUMS.minisig
 * into dir. The trusted comment names version and key, never the time: two builds of
 * one commit give the same bytes.
 */
export async function writeSignedSums({ dir, listed, key, trustedComment, untrustedComment }) {
  const sums = join(dir, 'SHA256SUMS');
  writeFileSync(sums, formatSha256Sums(listed));
  writeFileSync(`${sums}.minisig`, signDigest(await blake2b512File(sums), key, trustedComment, untrustedComment));
}

/**
 * Stages the whole top folder of one image (stageTopFolder) and signs its files: the
 * input of the tarball and of the OCI archive (scripts/image/oci.mjs).
 * @param {Parameters<typeof stageTopFolder>[0] & { targetId: string }} options
 * @returns {Promise<{ stagingDir: string, topName: string, topDir: string,
 *   entries: { path: string, type: 'file' | 'directory', mode: number }[],
 *   requirements: { glibc: string, glibcxx: string, node: { glibc: string, glibcxx: string } } }>} entries: the top folder and
 *   everything in it, paths relative to stagingDir (<topName>/...), sorted, in tar order
 */
export async function stageImage(options) {
  const staged = await stageTopFolder(options);
  const { key, label } = options.releaseKey;
  const listed = [];
  for (const entry of normalisedEntries(staged.topDir)) {
    if (entry.type === 'file') listed.push({ name: entry.path, sha256: await sha256File(join(staged.topDir, entry.path)) });
  }
  await writeSignedSums({
    dir: staged.topDir,
    listed,
    key,
    trustedComment: `ct-ops-appliance ${options.version} ${options.targetId} image files, ${label} key ${keyIdHex(key.keyId)}`,
    untrustedComment: `CT-Ops appliance ${options.version} ${options.targetId} SHA256SUMS signature`,
  });
  const entries = [
    { path: staged.topName, type: 'directory', mode: 0o755 },
    ...normalisedEntries(staged.topDir).map((entry) => ({ ...entry, path: `${staged.topName}/${entry.path}` })),
  ];
  return { ...staged, entries };
}
