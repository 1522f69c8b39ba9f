/**
 * "install.sh to a healthy /healthz" for bench:image (test/bench/image.ts calls
 * measureInstallToHealthy; run alone: `node --import tsx test/bench/image-install.ts`): the wall
 * time of the image's own install.sh, from its start to its exit 0 — which it reaches only once
 * `doctor --wait-healthy` saw /healthz answer 200 — in a freshly booted Debian root without Node
 * (systemd-nspawn), with the tarball already extracted there. Target: 30 s.
 */
import { performance } from 'node:perf_hooks';
import { TestRoot } from '../helpers/chroot.ts';
import { builtImage, type BuiltImage } from '../helpers/image.ts';
import { freePorts, imageOnMedia, installedHealthz, runInstaller } from '../helpers/installed-image.ts';
import { BootedSystem, nspawnUnavailable } from '../helpers/nspawn.ts';

export const INSTALL_TO_HEALTHY_TARGET_SECS = 30;

/** Seconds from install.sh's start to its successful exit, on a fresh root per run (the booting is not counted). */
export async function measureInstallToHealthy(image: BuiltImage): Promise<number> {
  const unavailable = nspawnUnavailable();
  if (unavailable) throw new Error(`cannot boot a container here: ${unavailable}`);
  const root = TestRoot.create();
  let system: BootedSystem | undefined;
  try {
    const media = imageOnMedia(root, image, 'bench');
    const ports = await freePorts();
    system = await BootedSystem.boot(root);
    const started = performance.now();
    const installed = await runInstaller(system, media, ['--san', 'localhost', '--http-port', String(ports.http), '--grpc-port', String(ports.grpc)]);
    const seconds = (performance.now() - started) / 1000;
    if (installed.code !== 0) throw new Error(`install.sh exited ${installed.code}: ${installed.stdout}${installed.stderr}`);
    if ((await installedHealthz(root, ports.http)).status !== 200) throw new Error('/healthz is not 200 after install.sh');
    return seconds;
  } finally {
    await system?.dispose();
    root.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = await measureInstallToHealthy(await builtImage('linux-x64'));
  process.stdout.write(`| install.sh to healthy /healthz (linux-x64, nspawn) | ${seconds.toFixed(1)} s | ≤ ${INSTALL_TO_HEALTHY_TARGET_SECS} s |\n`);
  if (seconds > INSTALL_TO_HEALTHY_TARGET_SECS) process.exitCode = 1;
}
