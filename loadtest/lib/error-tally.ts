import * as grpc from '@grpc/grpc-js';

/** How many error messages are kept as examples; beyond them errors are only counted by kind. */
const KEPT_MESSAGES = 100;

/**
 * Errors of a load run counted by kind (`<phase>:<gRPC status name or outcome>`, e.g.
 * `heartbeat:UNAVAILABLE`, `register:AGENT_STATUS_PENDING`), with the first KEPT_MESSAGES
 * messages as examples, so a run of 60,000 failing agents stays small.
 */
export class ErrorTally {
  /** The first KEPT_MESSAGES messages, `<agent>: <what happened>`. */
  readonly messages: string[] = [];
  readonly byKind: Record<string, number> = {};
  #total = 0;

  get total(): number {
    return this.#total;
  }

  add(kind: string, message: string): void {
    this.#total += 1;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
    if (this.messages.length < KEPT_MESSAGES) this.messages.push(message);
  }

  /** Counts a failed call under `phase` and the gRPC status it ended with (`OTHER` when it is not a gRPC error). */
  addCallError(phase: string, who: string, error: unknown): void {
    const code = (error as { code?: unknown }).code;
    const kind = typeof code === 'number' && grpc.status[code] !== undefined ? grpc.status[code] : 'OTHER';
    this.add(`${phase}:${kind}`, `${who}: ${(error as Error).message ?? String(error)}`);
  }
}

/** Adds counts by kind into `into` (merging the tallies of several generator processes). */
export function addCounts(into: Record<string, number>, counts: Readonly<Record<string, number>>): Record<string, number> {
  for (const [kind, count] of Object.entries(counts)) into[kind] = (into[kind] ?? 0) + count;
  return into;
}
