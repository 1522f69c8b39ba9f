import { Writable } from 'node:stream';
import { pino } from 'pino';

/** A real pino logger writing JSON lines into memory: `lines()` parses what was logged so far; `bytes()` its size. */
export function memoryLogger(): { log: pino.Logger; lines: () => Array<Record<string, unknown>>; bytes: () => number } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { log: pino(sink), lines: () => text.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>), bytes: () => text.length };
}
