import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IngestServiceClient } from '../../common/proto.ts';
import { TestAppliance } from './appliance.ts';
import { ingestClient } from './ingest-client.ts';

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

/**
 * A real appliance whose wall clock the test moves while it runs (libfaketime reading the offset
 * from a file on every clock read), with an ingest client: `setClock('+1h')`, `setClock('+0')`.
 */
export class ClockedAppliance {
  private constructor(
    readonly appliance: TestAppliance,
    readonly client: IngestServiceClient,
    private readonly clockDir: string,
  ) {}

  static async start(): Promise<ClockedAppliance> {
    const clockDir = mkdtempSync(join(tmpdir(), 'ct-ops-appliance-clock-'));
    writeFileSync(join(clockDir, 'faketime'), '+0\n');
    const appliance = await TestAppliance.start({ env: shiftedClockEnv({ timestampFile: join(clockDir, 'faketime') }) });
    return new ClockedAppliance(appliance, ingestClient(appliance.address, appliance.caCert), clockDir);
  }

  /** Moves the appliance's wall clock (libfaketime's relative form, "+0", "+3m"); its monotonic clock stays real. */
  setClock(offset: string): void {
    writeFileSync(join(this.clockDir, 'faketime'), `${offset}\n`);
  }

  async dispose(): Promise<void> {
    this.client.close();
    await this.appliance.dispose();
    rmSync(this.clockDir, { recursive: true, force: true });
  }
}
