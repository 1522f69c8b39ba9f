// Progress lines on a terminal (stderr), nothing when piped; warnings always.
export function createReporter({ stream = process.stderr, quiet = false } = {}) {
  const interactive = Boolean(stream.isTTY) && !quiet;
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
  return {
    progress(message) {
      if (interactive) stream.write(`[${elapsed()}] ${message}\n`);
    },
    warn(message) {
      stream.write(`${message}\n`);
    },
  };
}
