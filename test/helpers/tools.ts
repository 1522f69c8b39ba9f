import { execFileSync } from 'node:child_process';

/** True when a command is on PATH (a real tool a test drives: dpkg-query, wine, qemu-aarch64, …). */
export function hasCommand(command: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$0"', command], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
