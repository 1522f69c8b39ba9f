import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APPLIANCE_BIN, LoggedProcess, run } from './processes.ts';
import { waitFor } from './wait.ts';

/** Why the tmpfs tests cannot run here (not root, no unshare/nsenter), or undefined when they can. */
export function tmpfsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs in a private mount namespace';
  return undefined;
}

/**
 * A small tmpfs mounted in a private mount namespace that only this test sees: a holder process
 * (`sleep`) keeps the namespace alive between appliance runs; everything that reads or writes the
 * volume enters it with nsenter. dispose() kills the holder, and the mount vanishes with it.
 */
export class TmpfsVolume {
  /** The mount point (an empty directory outside the namespace). */
  readonly dir: string;
  readonly #holder: LoggedProcess;

  private constructor(dir: string, holder: LoggedProcess) {
    this.dir = dir;
    this.#holder = holder;
  }

  static async create(sizeMb: number): Promise<TmpfsVolume> {
    const dir = mkdtempSync(join(tmpdir(), 'ct-ops-tmpfs-'));
    // Bounded: the holder sleeps at most 15 minutes even if the test dies without cleaning up.
    const holder = new LoggedProcess('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${sizeMb}m tmpfs "$0" && echo mounted && exec sleep 900`, dir]);
    const volume = new TmpfsVolume(dir, holder);
    try {
      await waitFor('tmpfs mounted', () => {
        if (!holder.running) throw new Error(`unshare exited: ${holder.stderr}`);
        return holder.stdout.includes('mounted');
      }, 10_000, 20);
    } catch (error) {
      await volume.dispose();
      throw error;
    }
    return volume;
  }

  /** nsenter arguments that run `command` inside the volume's mount namespace. */
  enter(command: string, ...args: string[]): [string, string[]] {
    return ['nsenter', ['-t', String(this.#holder.child.pid), '-m', command, ...args]];
  }

  /** Runs a command inside the namespace to completion. */
  async run(command: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return run(...this.enter(command, ...args));
  }

  /** Runs a command inside the namespace; throws unless it exits 0. */
  async check(command: string, ...args: string[]): Promise<string> {
    const result = await this.run(command, ...args);
    if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  }

  /** Fills the volume to the last byte (dd stops at ENOSPC). */
  async fill(): Promise<void> {
    await this.run('dd', 'if=/dev/zero', `of=${join(this.dir, 'filler')}`, 'bs=64k');
    await this.run('sh', '-c', `cat /dev/zero > "${join(this.dir, 'filler-tail')}"`);
    const free = Number((await this.check('stat', '-f', '-c', '%a', this.dir)).trim());
    if (free !== 0) throw new Error(`the volume still has ${free} free blocks`);
  }

  /** Frees what fill() took. */
  async free(): Promise<void> {
    await this.check('rm', '-f', join(this.dir, 'filler'), join(this.dir, 'filler-tail'));
  }

  /** Starts `ct-ops-appliance serve` on this volume, inside the namespace. */
  startAppliance(ports: { grpc: number; http: number }): LoggedProcess {
    const [command, args] = this.enter(
      process.execPath, APPLIANCE_BIN, 'serve', '--data-dir', this.dir, '--listen', '127.0.0.1',
      '--grpc-port', String(ports.grpc), '--http-port', String(ports.http), '--san', 'localhost', '--san', '127.0.0.1',
    );
    return new LoggedProcess(command, args, { CT_OPS_APPLIANCE_LOG_LEVEL: 'debug' });
  }

  /** Runs the admin CLI inside the namespace with --json; throws unless it exits 0. */
  async cliJson<T>(...args: string[]): Promise<T> {
    return JSON.parse(await this.check(process.execPath, APPLIANCE_BIN, ...args, '--data-dir', this.dir, '--json')) as T;
  }

  async dispose(): Promise<void> {
    await this.#holder.stop('SIGKILL');
    rmdirSync(this.dir);
  }
}
