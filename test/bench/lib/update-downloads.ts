/**
 * bench:update's downloaders, run as their own process (forked by test/bench/update.ts) so that
 * decrypting and writing a fleet's downloads does not delay the heartbeat process's event loop, whose
 * round trips are the measure. Each agent fetches the release file as the agent does
 * (agent/update/download.ts, resuming with Range), following a 503's Retry-After ± 50 % as
 * agent/update/updater.ts does. Talks to its parent over IPC: one DownloadJob in, one DownloadResult out.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { downloadResuming } from '../../../agent/update/download.ts';
import { errorCodeOf } from '../../../common/errors.ts';

export interface DownloadJob {
  readonly port: number;
  readonly caPem: string;
  /** The download path of the file, /agent/v1/releases/<version>/<file>. */
  readonly path: string;
  readonly size: number;
  readonly jwts: readonly string[];
  /** Where each agent's file is written (then removed). */
  readonly workDir: string;
}

export interface DownloadResult {
  readonly seconds: number;
  /** 503 ERR_DOWNLOAD_BUSY answers. */
  readonly busy: number;
  readonly failures: number;
}

async function fetchAll(job: DownloadJob): Promise<DownloadResult> {
  let busy = 0;
  let failures = 0;
  let done = 0;
  const started = performance.now();
  const fetchOne = async (jwt: string, index: number): Promise<void> => {
    const destination = join(job.workDir, `download-${index}`);
    const source = { host: '127.0.0.1', port: job.port, path: job.path, jwt, caPem: job.caPem };
    for (;;) {
      try {
        await downloadResuming(source, destination, job.size, new AbortController().signal);
        break;
      } catch (error) {
        if (errorCodeOf(error) === 'ERR_DOWNLOAD_BUSY') busy += 1;
        else failures += 1;
        const retryAfterMs = (error as { retryAfterMs?: number }).retryAfterMs ?? 5_000;
        await sleep(Math.round(retryAfterMs * (0.5 + Math.random())));
      }
    }
    rmSync(destination, { force: true });
    done += 1;
    if (done % 100 === 0) process.stderr.write(`bench:update: ${done} of ${job.jwts.length} fetched\n`);
  };
  await Promise.all(job.jwts.map(fetchOne));
  return { seconds: (performance.now() - started) / 1000, busy, failures };
}

process.once('message', (job: DownloadJob) => {
  void fetchAll(job).then(
    (result) => process.send!(result, () => process.exit(0)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
});
