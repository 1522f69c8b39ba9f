/**
 * The lifecycle of one SubmitSoftwareInventory stream as a pure transition table; the handler
 * (grpc/inventory-handler.ts) feeds it every event of the call, one at a time, and acts on the
 * moves. The stream's scan has its own lifecycle (scan-states.ts).
 *
 * - opening: the call arrived; its credential and the host are being checked.
 * - awaiting-first-chunk: the host may report; no chunk was stored yet, so the stream has no scan.
 * - receiving: a chunk was stored; the next must continue the same scan, in order.
 * - closed: the call was answered (scan completed, refused, ended early) or broke. Terminal:
 *   the answer is given exactly once, on the move into closed.
 */
export const INVENTORY_STREAM_STATES = ['opening', 'awaiting-first-chunk', 'receiving', 'closed'] as const;
export type InventoryStreamState = (typeof INVENTORY_STREAM_STATES)[number];

/**
 * - authenticated: the JWT, the rate budget and the host allow the stream.
 * - refused: the open or a chunk was refused (the agent's input, the host's state, a failure of ours).
 * - chunk_stored / last_chunk_stored: a chunk was committed; the last one completed the scan.
 * - ended: the agent half-closed the call (after the chunks it sent were handled).
 * - broke: the call was cancelled or failed (client gone, deadline, transport error).
 */
export const INVENTORY_STREAM_EVENTS = ['authenticated', 'refused', 'chunk_stored', 'last_chunk_stored', 'ended', 'broke'] as const;
export type InventoryStreamEvent = (typeof INVENTORY_STREAM_EVENTS)[number];

const STREAM_TRANSITIONS: Readonly<Record<InventoryStreamState, Readonly<Partial<Record<InventoryStreamEvent, InventoryStreamState>>>>> = {
  opening: { authenticated: 'awaiting-first-chunk', refused: 'closed', broke: 'closed' },
  'awaiting-first-chunk': { chunk_stored: 'receiving', last_chunk_stored: 'closed', refused: 'closed', ended: 'closed', broke: 'closed' },
  receiving: { chunk_stored: 'receiving', last_chunk_stored: 'closed', refused: 'closed', ended: 'closed', broke: 'closed' },
  closed: {},
};

/** The state an event moves the stream to, or undefined when the event does not apply in that state. */
export function nextInventoryStreamState(state: InventoryStreamState, event: InventoryStreamEvent): InventoryStreamState | undefined {
  return STREAM_TRANSITIONS[state][event];
}
