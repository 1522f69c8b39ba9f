import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { FromWorker, ToWorker, WorkerJob } from '../worker.ts';

type Reply<S extends FromWorker['step']> = Extract<FromWorker, { step: S }>;

/**
 * The generator's worker processes: this script forked again with --worker, one per
 * `--processes`, so that their connections together may pass one process's open-file limit.
 * Each step is sent to every worker and awaited from all; a worker that exits before answering
 * fails the step (and the run).
 */
export class WorkerPool {
  readonly #workers: ChildProcess[];

  /** Forks `count` workers of `script` (the running entry point: loadtest/main.ts under tsx, or the bundle). */
  constructor(script: string, count: number) {
    this.#workers = Array.from({ length: count }, () => fork(script, ['--worker'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }

  get size(): number {
    return this.#workers.length;
  }

  /** Sends each worker its job; resolves when every one has made its agents. */
  start(jobs: readonly WorkerJob[]): Promise<Array<Reply<'prepared'>>> {
    return this.#step((_, index) => ({ step: 'job', job: jobs[index]! }), 'prepared');
  }

  /** Sends `message` to every worker and resolves with their `reply` steps, in worker order. */
  step<S extends FromWorker['step']>(message: ToWorker, reply: S): Promise<Array<Reply<S>>> {
    return this.#step(() => message, reply);
  }

  /** Resolves when every worker has exited (after its result, each closes its streams and exits). */
  async closed(): Promise<void> {
    await Promise.all(this.#workers.map((worker) => (worker.exitCode !== null || worker.signalCode !== null ? undefined : once(worker, 'exit'))));
  }

  /** Kills every worker still running (the watchdog, a failed step). */
  kill(): void {
    for (const worker of this.#workers) if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
  }

  /**
   * Each worker's `reply`, or the step fails when a worker exits before giving it. Only its own
   * answer counts: after the last step a worker that answered closes its streams and exits while
   * the others still drain, and that exit is no failure (a reconnect storm's run failed so).
   */
  #step<S extends FromWorker['step']>(message: (worker: ChildProcess, index: number) => ToWorker, reply: S): Promise<Array<Reply<S>>> {
    const replies = this.#workers.map(
      (worker, index) =>
        new Promise<Reply<S>>((resolve, reject) => {
          const gone = (code: number | null, signal: NodeJS.Signals | null): void => {
            worker.off('message', onMessage);
            reject(new Error(`generator process ${index} exited (${signal ?? code}) before the run ended`));
          };
          const onMessage = (answer: FromWorker): void => {
            if (answer.step !== reply) return;
            worker.off('message', onMessage);
            worker.off('exit', gone);
            resolve(answer as Reply<S>);
          };
          if (worker.exitCode !== null || worker.signalCode !== null) return gone(worker.exitCode, worker.signalCode);
          worker.on('message', onMessage);
          worker.once('exit', gone);
          worker.send(message(worker, index));
        }),
    );
    return Promise.all(replies);
  }
}
