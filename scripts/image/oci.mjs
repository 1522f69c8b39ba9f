// The OCI image archive of the appliance, written without a container engine: an OCI image
// layout (oci-layout, index.json, blobs/sha256/…) in one tar, plus Docker's manifest.json so
// `docker load` of any version reads it. Two gzip layers: the C runtime the bundled Node needs
// (scripts/image/runtime-libraries.mjs) with a minimal /etc, and the staged image folder at
// /opt/ct-ops/<version>/. No distribution layer and no shell: the entrypoint runs the bundled
// Node on the appliance bundle directly (the bin/ launchers are POSIX sh, which the image
// does not have). Deterministic: the same staged folder, builder packages and
// SOURCE_DATE_EPOCH give the same bytes (fixed times and owners, sorted entries, gzip
// without a timestamp, JSON written in one key order).
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { byTarPath, tarBlocks } from './deterministic-tar.mjs';
import { runtimeLibraries } from './runtime-libraries.mjs';

/** The account the appliance runs as in the container: not root, numeric so no lookup is needed. */
export const IMAGE_USER = Object.freeze({ name: 'ct-ops-appliance', uid: 10001, gid: 10001 });
export const IMAGE_NAME = 'localhost/ct-ops-appliance';
const INSTALL_ROOT = 'opt/ct-ops';
const DATA_DIR = '/var/lib/ct-ops';
const OCI_ARCH = Object.freeze({ x64: { architecture: 'amd64' }, arm64: { architecture: 'arm64', variant: 'v8' } });

const MEDIA = Object.freeze({
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
});

/** A stream stage that hashes (and counts) what passes through unchanged. */
function tap(hash, counter = { bytes: 0 }) {
  return new Transform({
    transform(chunk, _encoding, done) {
      hash.update(chunk);
      counter.bytes += chunk.length;
      done(null, chunk);
    },
  });
}

/**
 * Writes one gzip layer of `entries` into blobsDir/<sha256 of the gzip>.
 * @returns {Promise<{ digest: string, size: number, diffId: string }>} digest and size of the blob, sha256 of the plain tar
 */
async function writeLayer(entries, mtime, blobsDir) {
  const partial = join(blobsDir, '.layer.partial');
  const plain = createHash('sha256');
  const compressed = createHash('sha256');
  const written = { bytes: 0 };
  await pipeline(Readable.from(tarBlocks(entries, mtime)), tap(plain), createGzip(), tap(compressed, written), createWriteStream(partial));
  const hex = compressed.digest('hex');
  renameSync(partial, join(blobsDir, hex));
  return { digest: `sha256:${hex}`, size: written.bytes, diffId: `sha256:${plain.digest('hex')}` };
}

/** Writes a JSON blob (one line, key order as built) and returns its descriptor fields. */
function writeJsonBlob(value, blobsDir) {
  const bytes = Buffer.from(JSON.stringify(value));
  const hex = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(blobsDir, hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

/** The linux ELF files of the top folder that run in the container: the Node runtime and the native addons next to the bundles. */
function runtimeElfFiles(topDir) {
  const addons = readdirSync(join(topDir, 'dist')).filter((name) => name.endsWith('.node')).map((name) => join(topDir, 'dist', name));
  return [join(topDir, 'runtime/bin/node'), ...addons];
}

/** Folders leading to `path` (exclusive), e.g. "usr/share/doc/x" → usr, usr/share, usr/share/doc. */
function parentFolders(path) {
  const parts = path.split('/').slice(0, -1);
  return parts.map((_, index) => parts.slice(0, index + 1).join('/'));
}

/** The base layer: C runtime, licences, accounts, /tmp and the data folder owned by the appliance's user. */
function baseEntries(runtime) {
  const { uid, gid, name } = IMAGE_USER;
  const text = (path, content) => ({ path, type: 'File', mode: 0o644, data: Buffer.from(content) });
  const files = [
    text('etc/passwd', `root:x:0:0:root:/root:/usr/sbin/nologin\n${name}:x:${uid}:${gid}:CT-Ops appliance:${DATA_DIR}:/usr/sbin/nologin\n`),
    text('etc/group', `root:x:0:\n${name}:x:${gid}:\n`),
    // glibc 2.34+ has the files and dns services built in: no libnss_* to ship.
    text('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n'),
    ...runtime.libraries.map((library) => ({ path: `${runtime.imageDir}/${library.name}`, type: 'File', mode: 0o755, file: library.file, size: statSync(library.file).size })),
    ...runtime.packages.map((pkg) => ({ path: `usr/share/doc/${pkg.name}/copyright`, type: 'File', mode: 0o644, file: pkg.copyright, size: statSync(pkg.copyright).size })),
    { path: runtime.interpreter.path, type: 'SymbolicLink', mode: 0o777, linkpath: runtime.interpreter.linkpath },
  ];
  const folders = new Set(files.flatMap((entry) => parentFolders(entry.path)));
  for (const folder of parentFolders(DATA_DIR.slice(1))) folders.add(folder);
  return [
    ...[...folders].map((path) => ({ path, type: 'Directory', mode: 0o755 })),
    { path: 'tmp', type: 'Directory', mode: 0o1777 },
    { path: DATA_DIR.slice(1), type: 'Directory', mode: 0o700, uid, gid },
    ...files,
  ].sort(byTarPath);
}

/**
 * The application layer: the image's top folder at /opt/ct-ops/<version>/ (as the installer puts
 * it on a host) and /opt/ct-ops/current → <version>; owned by root, modes as staged.
 */
function applianceEntries({ stagingDir, topName, entries, version }) {
  const top = `${INSTALL_ROOT}/${version}`;
  const content = entries
    .filter((entry) => entry.path !== topName)
    .map((entry) => {
      const inImage = `${top}/${entry.path.slice(topName.length + 1)}`;
      if (entry.type === 'directory') return { path: inImage, type: 'Directory', mode: entry.mode };
      const file = join(stagingDir, entry.path);
      return { path: inImage, type: 'File', mode: entry.mode, file, size: statSync(file).size };
    });
  return [
    { path: 'opt', type: 'Directory', mode: 0o755 },
    { path: INSTALL_ROOT, type: 'Directory', mode: 0o755 },
    { path: top, type: 'Directory', mode: 0o755 },
    { path: `${INSTALL_ROOT}/current`, type: 'SymbolicLink', mode: 0o777, linkpath: version },
    ...content,
  ].sort(byTarPath);
}

/**
 * The image configuration: how a container of the image runs.
 * Settings beyond the data folder come from `serve` flags, CT_OPS_APPLIANCE_* variables or a
 * mounted TOML (--config), as docs/operations.md "Running the OCI image" shows.
 */
function imageConfig({ arch, version, created, diffIds, runtime }) {
  const current = `/${INSTALL_ROOT}/current`;
  return {
    created,
    ...OCI_ARCH[arch],
    os: 'linux',
    config: {
      User: `${IMAGE_USER.uid}:${IMAGE_USER.gid}`,
      ExposedPorts: { '8443/tcp': {}, '9443/tcp': {} },
      Env: [
        // The image's Node first: `docker exec CONTAINER node /opt/ct-ops/current/dist/ct-ops-appliance.js …`, as the first-start text prints it.
        `PATH=${current}/runtime/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        `CT_OPS_APPLIANCE_DATA_DIR=${DATA_DIR}`,
        // The key that signed this very image and its agent release (checked on the transfer station), so bundles build from the first start.
        `CT_OPS_APPLIANCE_RELEASE_PUBLIC_KEY_FILE=${current}/dist/agents/${version}/release.pub`,
      ],
      Entrypoint: [`${current}/runtime/bin/node`, `${current}/dist/ct-ops-appliance.js`],
      Cmd: ['serve'],
      Volumes: { [DATA_DIR]: {} },
      WorkingDir: DATA_DIR,
      Labels: imageLabels({ version, created, runtime }),
      StopSignal: 'SIGTERM',
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: [
      { created, created_by: 'scripts/image/oci.mjs: C runtime from the builder\'s Debian packages, /etc accounts, /tmp, /var/lib/ct-ops', comment: runtimePackageList(runtime) },
      { created, created_by: `scripts/image/oci.mjs: the appliance image folder at /${INSTALL_ROOT}/${version}` },
    ],
  };
}

function runtimePackageList(runtime) {
  return runtime.packages.map((pkg) => `${pkg.name}=${pkg.version}`).join(' ');
}

function imageLabels({ version, created, runtime }) {
  return {
    'org.opencontainers.image.title': 'ct-ops-appliance',
    'org.opencontainers.image.description': 'CT-Ops appliance: enrolment and ingest server, admin API and offline bundle builder with its signed agent release',
    'org.opencontainers.image.version': version,
    'org.opencontainers.image.created': created,
    // Where the shipped glibc and GCC runtime come from: the rebuild is byte-identical only on a builder with these package versions.
    'io.ct-ops.runtime.debian-packages': runtimePackageList(runtime),
  };
}

/**
 * Writes `outFile`, the OCI image archive of one staged image (what the tarball holds), for
 * linux-<arch>. Blobs are staged in `<outFile>.blobs-partial/` and the archive appears
 * under its name only when complete.
 * @param {{ outFile: string, arch: 'x64' | 'arm64', version: string, stagingDir: string, topName: string,
 *   entries: { path: string, type: 'file' | 'directory', mode: number }[], mtime: Date }} options
 *   entries: the top folder and everything in it, paths relative to stagingDir (<topName>/…), as
 *   scripts/image/stage.mjs stageImage returns them; mtime: SOURCE_DATE_EPOCH, the time of every
 *   entry and the image's `created`
 * @returns {Promise<{ file: string, size: number, manifestDigest: string, reference: string, runtimePackages: string }>}
 *   reference: the name docker/podman give the loaded image
 * Throws BuildImageError ERR_RUNTIME_LIBRARY_MISSING / ERR_TOOL_MISSING (runtime-libraries.mjs).
 */
export async function writeOciArchive({ outFile, arch, version, stagingDir, topName, entries, mtime }) {
  const created = mtime.toISOString().replace('.000Z', 'Z');
  const reference = `${IMAGE_NAME}:${version}`;
  const runtime = await runtimeLibraries(arch, runtimeElfFiles(join(stagingDir, topName)));
  const work = `${outFile}.blobs-partial`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    const layers = [await writeLayer(baseEntries(runtime), mtime, work), await writeLayer(applianceEntries({ stagingDir, topName, entries, version }), mtime, work)];
    const config = writeJsonBlob(imageConfig({ arch, version, created, diffIds: layers.map((layer) => layer.diffId), runtime }), work);
    const manifest = writeJsonBlob(
      {
        schemaVersion: 2,
        mediaType: MEDIA.manifest,
        config: { mediaType: MEDIA.config, ...config },
        layers: layers.map(({ digest, size }) => ({ mediaType: MEDIA.layer, digest, size })),
        annotations: { 'org.opencontainers.image.created': created, 'org.opencontainers.image.version': version },
      },
      work,
    );
    const index = {
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [
        {
          mediaType: MEDIA.manifest,
          ...manifest,
          platform: { ...OCI_ARCH[arch], os: 'linux' },
          // podman and skopeo name the image after ref.name; docker (containerd) after io.containerd.image.name.
          annotations: { 'io.containerd.image.name': reference, 'org.opencontainers.image.ref.name': reference },
        },
      ],
    };
    const blobPath = (digest) => `blobs/sha256/${digest.slice('sha256:'.length)}`;
    // docker load before 25 reads only this file (the format of `docker save`), gzip layers included.
    const dockerManifest = [{ Config: blobPath(config.digest), RepoTags: [reference], Layers: layers.map((layer) => blobPath(layer.digest)) }];
    const json = (path, value) => ({ path, type: 'File', mode: 0o644, data: Buffer.from(JSON.stringify(value)) });
    const blobs = [...layers, config, manifest].map(({ digest }) => ({ path: blobPath(digest), type: 'File', mode: 0o644, file: join(work, digest.slice(7)), size: statSync(join(work, digest.slice(7))).size }));
    const members = [
      json('oci-layout', { imageLayoutVersion: '1.0.0' }),
      json('index.json', index),
      json('manifest.json', dockerManifest),
      { path: 'blobs', type: 'Directory', mode: 0o755 },
      { path: 'blobs/sha256', type: 'Directory', mode: 0o755 },
      ...blobs,
    ].sort(byTarPath);
    mkdirSync(dirname(outFile), { recursive: true });
    await pipeline(Readable.from(tarBlocks(members, mtime)), createWriteStream(`${outFile}.partial`));
    renameSync(`${outFile}.partial`, outFile);
    return { file: outFile, size: statSync(outFile).size, manifestDigest: manifest.digest, reference, runtimePackages: runtimePackageList(runtime) };
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(`${outFile}.partial`, { force: true });
  }
}
