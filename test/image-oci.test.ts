import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import * as tar from 'tar';
import { keyIdHex, parsePublicKeyFile } from '../common/minisign.ts';
import { IMAGE_NAME, IMAGE_USER, writeOciArchive } from '../scripts/image/oci.mjs';
import { chrootUnavailable } from './helpers/chroot.ts';
import { httpsJson } from './helpers/https.ts';
import { builtImage } from './helpers/image.ts';
import { LoggedProcess } from './helpers/processes.ts';
import { hasCommand } from './helpers/tools.ts';

/*
 * The OCI archive of the linux-x64 image (issue 10), checked with tools that did not write it:
 * skopeo reads and copies it (verifying every digest), umoci unpacks it, and the appliance
 * serves from umoci's rootfs under chroot as the image's user, with only the C runtime the
 * archive ships. One image build per run (test/helpers/image.ts), one unpack per file.
 */

const skip = chrootUnavailable() ?? ['skopeo', 'umoci', 'podman'].map((tool) => (hasCommand(tool) ? undefined : `${tool} is not installed (scripts/test-prerequisites.sh)`)).find(Boolean);

interface ImageConfig {
  created: string;
  architecture: string;
  os: string;
  config: { User: string; Entrypoint: string[]; Cmd: string[]; Env: string[]; ExposedPorts: Record<string, object>; Volumes: Record<string, object>; Labels: Record<string, string> };
  rootfs: { diff_ids: string[] };
}

describe('the OCI image archive', { skip, timeout: 30 * 60_000 }, () => {
  let image: Awaited<ReturnType<typeof builtImage>>;
  let archive: string;
  let reference: string;
  let config: ImageConfig;
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-oci-'));

  before(async () => {
    image = await builtImage('linux-x64');
    assert.ok(image.ociArchive, 'the image build writes the OCI archive');
    archive = image.ociArchive;
    reference = `${IMAGE_NAME}:${image.version}`;
    config = JSON.parse(execFileSync('skopeo', ['inspect', '--config', `oci-archive:${archive}`], { encoding: 'utf8' })) as ImageConfig;
    console.log(`OCI archive ${archive}: ${(statSync(archive).size / 1e6).toFixed(1)} MB; tarball ${(statSync(image.tarball).size / 1e6).toFixed(1)} MB`);
  });

  after(() => rmSync(scratch, { recursive: true, force: true }));

  test('skopeo reads a linux/amd64 image that runs the bundled Node as a non-root user, with the ports, volume and labels', () => {
    const inspected = JSON.parse(execFileSync('skopeo', ['inspect', `oci-archive:${archive}`], { encoding: 'utf8' })) as { Architecture: string; Os: string; Layers: string[] };
    assert.equal(inspected.Architecture, 'amd64');
    assert.equal(inspected.Os, 'linux');
    assert.equal(inspected.Layers.length, 2, 'C runtime layer + appliance layer, no distribution layer');
    assert.equal(config.config.User, `${IMAGE_USER.uid}:${IMAGE_USER.gid}`);
    assert.deepEqual(config.config.Entrypoint, ['/opt/ct-ops/current/runtime/bin/node', '/opt/ct-ops/current/dist/ct-ops-appliance.js']);
    assert.deepEqual(config.config.Cmd, ['serve']);
    assert.ok(config.config.Env.includes('CT_OPS_APPLIANCE_DATA_DIR=/var/lib/ct-ops'));
    assert.deepEqual(Object.keys(config.config.ExposedPorts).sort(), ['8443/tcp', '9443/tcp']);
    assert.deepEqual(Object.keys(config.config.Volumes), ['/var/lib/ct-ops']);
    assert.equal(config.config.Labels['org.opencontainers.image.version'], image.version);
    assert.match(config.config.Labels['io.ct-ops.runtime.debian-packages'] ?? '', /^libc6=\S+ libgcc-s1=\S+ libstdc\+\+6=\S+$/);
  });

  test('the archive names the image for podman/skopeo (index.json) and for docker load (manifest.json)', async () => {
    const members = new Map<string, Buffer>();
    await pipeline(
      createReadStream(archive),
      tar.list({
        onReadEntry: (entry) => {
          if (!['index.json', 'manifest.json', 'oci-layout'].includes(entry.path)) return entry.resume();
          const chunks: Buffer[] = [];
          entry.on('data', (chunk: Buffer) => chunks.push(chunk)).on('end', () => members.set(entry.path, Buffer.concat(chunks)));
        },
      }),
    );
    assert.deepEqual(JSON.parse(members.get('oci-layout')!.toString()), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(members.get('index.json')!.toString()) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0]!.annotations['org.opencontainers.image.ref.name'], reference);
    assert.equal(index.manifests[0]!.annotations['io.containerd.image.name'], reference);
    const [docker] = JSON.parse(members.get('manifest.json')!.toString()) as { Config: string; RepoTags: string[]; Layers: string[] }[];
    assert.deepEqual(docker!.RepoTags, [reference]);
    assert.equal(docker!.Layers.length, 2);
  });

  test('podman load names the image localhost/ct-ops-appliance:<version> and keeps its user and entrypoint', () => {
    // A private store in the scratch folder (vfs: plain copies, no mounts), so the machine's podman is untouched.
    const podman = ['--root', join(scratch, 'podman-root'), '--runroot', join(scratch, 'podman-run'), '--storage-driver', 'vfs'];
    const loaded = execFileSync('podman', [...podman, 'load', '--quiet', '--input', archive], { encoding: 'utf8' });
    assert.equal(loaded.trim(), `Loaded image: ${reference}`);
    const inspected = execFileSync('podman', [...podman, 'image', 'inspect', '--format', '{{.Config.User}} {{.Architecture}} {{json .Config.Entrypoint}}', reference], { encoding: 'utf8' });
    assert.equal(inspected.trim(), `${IMAGE_USER.uid}:${IMAGE_USER.gid} amd64 ${JSON.stringify(config.config.Entrypoint)}`);
  });

  test('skopeo copies the archive into a dir: layout, verifying every blob against its digest', () => {
    const copy = join(scratch, 'skopeo-dir');
    execFileSync('skopeo', ['copy', '--quiet', `oci-archive:${archive}:${reference}`, `dir:${copy}`]);
    const manifest = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
    for (const blob of [manifest.config, ...manifest.layers]) assert.ok(existsSync(join(copy, blob.digest.slice('sha256:'.length))), `${blob.digest} copied`);
  });

  test('the appliance serves /healthz from the rootfs umoci unpacked, as uid 10001, with no shell and no other node; its admin CLI runs there too', async () => {
    const layout = join(scratch, 'layout');
    const bundle = join(scratch, 'bundle');
    mkdirSync(layout);
    execFileSync('tar', ['-xf', archive, '-C', layout]);
    // As root, umoci keeps the image's owners: /var/lib/ct-ops belongs to the image's user.
    execFileSync('umoci', ['unpack', '--image', `${layout}:${reference}`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    const named = (names: readonly string[]): string[] => {
      const found: string[] = [];
      const walk = (relative: string): void => {
        for (const name of readdirSync(join(rootfs, relative))) {
          const path = relative ? `${relative}/${name}` : name;
          if (names.includes(name)) found.push(path);
          if (lstatSync(join(rootfs, path)).isDirectory()) walk(path);
        }
      };
      walk('');
      return found;
    };
    assert.deepEqual(named(['node', 'nodejs']), [`opt/ct-ops/${image.version}/runtime/bin/node`]);
    assert.deepEqual(named(['sh', 'bash', 'dash', 'busybox']), []);
    assert.equal(lstatSync(join(rootfs, 'var/lib/ct-ops')).uid, IMAGE_USER.uid);

    // In the container's environment exactly (env -i), as the image's user, what `docker run IMAGE ARGS…` runs.
    const inContainer = ['-i', ...config.config.Env, '/usr/sbin/chroot', `--userspec=${IMAGE_USER.uid}:${IMAGE_USER.gid}`, rootfs];
    const server = new LoggedProcess('env', [...inContainer, ...config.config.Entrypoint, ...config.config.Cmd, '--listen', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--san', 'localhost', '--san', '127.0.0.1']);
    try {
      const started = await server.waitForLog('appliance started', {}, 60_000);
      const ca = readFileSync(join(rootfs, 'var/lib/ct-ops/ca.crt'), 'utf8');
      const health = await httpsJson(started.http_port as number, ca, 'GET', '/healthz');
      assert.equal(health.status, 200);
      assert.equal(statSync(join(rootfs, 'var/lib/ct-ops/ca.crt')).uid, IMAGE_USER.uid, 'the data the appliance writes belongs to the image user');
      const imageKey = parsePublicKeyFile(readFileSync(join(rootfs, `opt/ct-ops/${image.version}/dist/agents/${image.version}/release.pub`), 'utf8'));
      assert.equal(started.release_key_id, keyIdHex(imageKey.keyId), "the image's own release key is trusted from the first start");
      // `docker exec CONTAINER node /opt/ct-ops/current/dist/ct-ops-appliance.js hosts list` (docs/operations.md):
      // node from the image's PATH, the data folder from its environment.
      const hosts = spawnSync('env', [...inContainer, 'node', '/opt/ct-ops/current/dist/ct-ops-appliance.js', 'hosts', 'list', '--json'], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(hosts.status, 0, hosts.stderr);
      assert.deepEqual(JSON.parse(hosts.stdout), []);
    } finally {
      await server.stop();
    }
  });

  test("writing the archive again from the tarball's files gives the same bytes", async () => {
    const stagingDir = join(scratch, 'staging');
    mkdirSync(stagingDir);
    execFileSync('tar', ['-xzf', image.tarball, '-C', stagingDir]);
    const entries: { path: string; type: 'file' | 'directory'; mode: number }[] = [];
    await pipeline(
      createReadStream(image.tarball),
      tar.list({
        onReadEntry: (entry) => {
          entries.push({ path: entry.path.replace(/\/$/, ''), type: entry.type === 'Directory' ? 'directory' : 'file', mode: entry.mode ?? 0 });
          entry.resume();
        },
      }),
    );
    const again = join(scratch, 'again.oci.tar');
    await writeOciArchive({ outFile: again, arch: 'x64', version: image.version, stagingDir, topName: image.topName, entries, mtime: new Date(config.created) });
    const compared = spawnSync('cmp', [archive, again], { encoding: 'utf8' });
    assert.equal(compared.status, 0, `byte-identical: ${compared.stdout}`);
  });
});
