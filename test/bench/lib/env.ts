/** A positive integer from the environment (a bench's size or duration), or the fallback when unset. */
export function positiveIntegerEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

/** Progress on stderr, prefixed with the bench's name. */
export function progressFor(bench: string): (message: string) => void {
  return (message) => process.stderr.write(`${bench}: ${message}\n`);
}
