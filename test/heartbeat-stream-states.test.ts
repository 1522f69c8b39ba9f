import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STREAM_EVENTS, STREAM_STATES, mayRead, maySend, nextStreamState, type StreamEvent, type StreamState } from '../appliance/heartbeat/stream-states.ts';

type Row = Record<StreamEvent, StreamState | '-'>;
/** A row of the expected table: every event refused ('-') but the moves named. */
const row = (moves: Partial<Row>): Row => ({ ...(Object.fromEntries(STREAM_EVENTS.map((event) => [event, '-'])) as Row), ...moves });
/** The events that end a live stream, each moving it to `to`. */
const ending = (to: StreamState): Partial<Row> => ({ 'refused': to, 'revoked': to, 'replaced': to, 'deadline': to, 'server-stopping': to, 'peer-ended': to });
/** A call that is gone (cancelled, or ended by the writer) closes any stream not closed yet. */
const gone: Partial<Row> = { 'peer-cancelled': 'closed', 'write-stalled': 'closed' };

/** Every state × event: the state it moves to, or '-' for an event the state refuses. */
const EXPECTED: Record<StreamState, Row> = {
  'opening': row({ 'admitted': 'awaiting-claim', 'admitted-report-only': 'reporting', ...ending('closed'), ...gone }),
  'awaiting-claim': row({ 'claim-accepted': 'streaming', 'heartbeat': 'awaiting-claim', ...ending('draining'), ...gone }),
  'streaming': row({ 'heartbeat': 'streaming', ...ending('draining'), ...gone }),
  'reporting': row({ 'heartbeat': 'reporting', ...ending('draining'), ...gone }),
  'draining': row({ 'answered': 'closed', ...gone }),
  'closed': row({}),
};

test('every state × event of a heartbeat stream moves where the table says, and every other pair is refused', () => {
  for (const state of STREAM_STATES) {
    for (const event of STREAM_EVENTS) {
      const expected = EXPECTED[state][event];
      assert.equal(nextStreamState(state, event), expected === '-' ? undefined : expected, `${state} × ${event}`);
    }
  }
});

test('a closed stream takes no event, and nothing returns a stream to opening', () => {
  for (const event of STREAM_EVENTS) assert.equal(nextStreamState('closed', event), undefined, event);
  for (const state of STREAM_STATES) for (const event of STREAM_EVENTS) assert.notEqual(nextStreamState(state, event), 'opening', `${state} × ${event}`);
});

test('a draining stream reads no more heartbeats and ends only once the one in hand is answered or the call is gone', () => {
  assert.equal(nextStreamState('draining', 'heartbeat'), undefined);
  const leaving = STREAM_EVENTS.filter((event) => nextStreamState('draining', event) !== undefined).sort();
  assert.deepEqual(leaving, ['answered', 'peer-cancelled', 'write-stalled']);
});

test('a stream reads heartbeats while awaiting its claim, streaming or reporting, and never once it began to end', () => {
  assert.deepEqual(STREAM_STATES.filter(mayRead), ['awaiting-claim', 'streaming', 'reporting']);
});

test('only a stream whose claim was accepted sends (tasks, credentials, trust); one awaiting its claim, reporting, or ending sends nothing unasked', () => {
  assert.deepEqual(STREAM_STATES.filter(maySend), ['streaming']);
});

test('a task can reach a stream only through an accepted claim: no event takes an opening stream straight to streaming', () => {
  for (const event of STREAM_EVENTS) assert.notEqual(nextStreamState('opening', event), 'streaming', event);
  for (const event of STREAM_EVENTS) assert.notEqual(nextStreamState('reporting', event), 'streaming', event);
  const into = STREAM_STATES.flatMap((state) => STREAM_EVENTS.filter((event) => nextStreamState(state, event) === 'streaming' && state !== 'streaming').map((event) => `${state} × ${event}`));
  assert.deepEqual(into, ['awaiting-claim × claim-accepted']);
});
