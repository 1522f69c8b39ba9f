/** Progress lines for people: on stderr when it is a terminal, nothing when piped. */
export function terminalProgress(prefix: string, stream: NodeJS.WriteStream = process.stderr): (message: string) => void {
  if (!stream.isTTY) return () => undefined;
  return (message) => {
    stream.write(`${prefix}: ${message}\n`);
  };
}
