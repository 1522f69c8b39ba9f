import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** The Debian package that provides libfaketime (the lead's .ci/run installs it). */
export const FAKETIME_PACKAGE = 'faketime';

/** libfaketime's preload library under /usr/lib/<multiarch>/faketime/; fails (never skips) when it is missing. */
export function libfaketimePath(): string {
  for (const dir of readdirSync('/usr/lib')) {
    const candidate = join('/usr/lib', dir, 'faketime', 'libfaketime.so.1');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`libfaketime is missing: apt-get install -y ${FAKETIME_PACKAGE}`);
}

/**
 * The environment that runs one process (and only it) with its wall clock (CLOCK_REALTIME) shifted
 * by `offset` in libfaketime's relative form: "+10m", "-2d". The monotonic clock stays real, so its
 * timers, backoff and timeouts keep their true length; a time namespace could not do this, since
 * it leaves CLOCK_REALTIME alone. With `timestampFile` the offset is read from that file on every
 * clock read instead, so a test can move the clock of a running process.
 */
export function shiftedClockEnv(shift: { offset: string } | { timestampFile: string }): NodeJS.ProcessEnv {
  return {
    LD_PRELOAD: libfaketimePath(),
    ...('offset' in shift ? { FAKETIME: shift.offset } : { FAKETIME_TIMESTAMP_FILE: shift.timestampFile, FAKETIME_NO_CACHE: '1' }),
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
    FAKETIME_DONT_RESET: '1',
  };
}
