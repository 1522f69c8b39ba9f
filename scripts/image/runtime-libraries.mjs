// The C runtime the OCI image ships instead of a distribution layer: exactly the shared
// objects the bundled Node and the better-sqlite3 addon need (their ELF NEEDED entries,
// followed transitively), taken from this builder's Debian packages, with those packages'
// copyright files. Node's official Linux builds are dynamically linked against glibc
// (libc, libm, libdl, libpthread, ld-linux) and the GCC runtime (libstdc++, libgcc_s).
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BuildImageError } from './errors.mjs';

const run = promisify(execFile);

/**
 * Per image CPU: where Debian keeps that CPU's libraries on this builder (x64: the native
 * multiarch folder; arm64: the cross packages libc6-arm64-cross, libstdc++6-arm64-cross,
 * libgcc-s1-arm64-cross that g++-aarch64-linux-gnu pulls in), the folder they take in the
 * image (the dynamic loader's built-in search path, there is no ld.so.cache), and where the
 * loader itself must be (the ELF program interpreter of Node's binaries).
 */
const LAYOUTS = Object.freeze({
  x64: {
    builderDirs: ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu'],
    imageDir: 'lib/x86_64-linux-gnu',
    interpreter: { path: 'lib64/ld-linux-x86-64.so.2', linkpath: '../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' },
  },
  arm64: {
    builderDirs: ['/usr/aarch64-linux-gnu/lib'],
    imageDir: 'lib/aarch64-linux-gnu',
    interpreter: { path: 'lib/ld-linux-aarch64.so.1', linkpath: 'aarch64-linux-gnu/ld-linux-aarch64.so.1' },
  },
});

/**
 * What the image's base layer holds of the C runtime.
 * @typedef {object} RuntimeLibraries
 * @property {{ name: string, file: string }[]} libraries  soname → host file (symlinks resolved), sorted by name
 * @property {{ name: string, version: string, copyright: string }[]} packages  the Debian packages they come from, sorted by name
 * @property {string} imageDir   folder of the libraries in the image, e.g. lib/x86_64-linux-gnu
 * @property {{ path: string, linkpath: string }} interpreter  symlink in the image to the dynamic loader
 */

async function tool(command, args) {
  try {
    return (await run(command, args, { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (error) {
    if (error.code === 'ENOENT') throw new BuildImageError('ERR_TOOL_MISSING', `${command} is not installed; the OCI image's C runtime is read from this builder's Debian packages`, { cause: error });
    throw error;
  }
}

/** The NEEDED sonames of an ELF file (readelf reads any CPU's files). */
async function neededLibraries(file) {
  const dynamic = await tool('readelf', ['--dynamic', '--wide', file]);
  return [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((match) => match[1]);
}

/** The Debian package (without :arch) that installed one of `paths`, its version and copyright file. */
async function owningPackage(paths) {
  for (const path of paths) {
    let owner;
    try {
      owner = (await run('dpkg-query', ['--search', path])).stdout;
    } catch (error) {
      if (error.code === 'ENOENT') throw new BuildImageError('ERR_TOOL_MISSING', 'dpkg-query is not installed; the OCI image is built on Debian (its C runtime comes from the builder\'s packages)', { cause: error });
      continue;
    }
    const name = owner.split(':')[0].trim();
    const version = (await tool('dpkg-query', ['--show', '--showformat=${Version}', name])).trim();
    const copyright = join('/usr/share/doc', name, 'copyright');
    if (!existsSync(copyright)) throw new BuildImageError('ERR_RUNTIME_LIBRARY_MISSING', `${copyright} is missing: the image ships each library with its licence`);
    return { name, version, copyright: realpathSync(copyright) };
  }
  throw new BuildImageError('ERR_RUNTIME_LIBRARY_MISSING', `no Debian package owns ${paths.join(' or ')}`);
}

/**
 * The shared objects that `elfFiles` (host paths of linux-<arch> executables and addons) need,
 * transitively, resolved in the builder's folders for `arch`.
 * Throws ERR_RUNTIME_LIBRARY_MISSING when one is not installed (arm64: apt-get install
 * g++-aarch64-linux-gnu), ERR_TOOL_MISSING without readelf or dpkg-query.
 * @param {'x64' | 'arm64'} arch
 * @param {readonly string[]} elfFiles
 * @returns {Promise<RuntimeLibraries>}
 */
export async function runtimeLibraries(arch, elfFiles) {
  const layout = LAYOUTS[arch];
  /** @type {Map<string, { file: string, candidates: string[] }>} */
  const found = new Map();
  const pending = [...elfFiles];
  while (pending.length > 0) {
    for (const name of await neededLibraries(pending.pop())) {
      if (found.has(name)) continue;
      const candidates = layout.builderDirs.map((dir) => join(dir, name)).filter((path) => existsSync(path));
      if (candidates.length === 0) {
        throw new BuildImageError('ERR_RUNTIME_LIBRARY_MISSING', `${name} (needed by the linux-${arch} runtime) is not in ${layout.builderDirs.join(' or ')}${arch === 'arm64' ? ': apt-get install g++-aarch64-linux-gnu' : ''}`);
      }
      const file = realpathSync(candidates[0]);
      found.set(name, { file, candidates });
      pending.push(file);
    }
  }
  const packages = new Map();
  for (const { candidates } of found.values()) {
    const owner = await owningPackage(candidates);
    packages.set(owner.name, owner);
  }
  const byName = (left, right) => (left.name < right.name ? -1 : left.name > right.name ? 1 : 0);
  return {
    libraries: [...found].map(([name, { file }]) => ({ name, file })).sort(byName),
    packages: [...packages.values()].sort(byName),
    imageDir: layout.imageDir,
    interpreter: layout.interpreter,
  };
}
