import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STREAM_EVENTS, STREAM_STATES, maySend, nextStreamState, type StreamEvent, type StreamState } from '../appliance/heartbeat/stream-states.ts';

/** Every state × event, written out: the state it moves to, or '-' for an event the state refuses. */
const EXPECTED: Record<StreamState, Record<StreamEvent, StreamState | '-'>> = {
  opening: {
    'admitted': 'awaiting-claim', 'admitted-report-only': 'reporting', 'claim-accepted': '-', 'heartbeat': '-',
    'refused': 'closed', 'revoked': 'closed', 'replaced': 'closed', 'deadline': 'closed', 'server-stopping': 'closed', 'peer-ended': 'closed',
    'answered': '-', 'peer-cancelled': 'closed', 'write-stalled': 'closed',
  },
  'awaiting-claim': {
    'admitted': '-', 'admitted-report-only': '-', 'claim-accepted': 'streaming', 'heartbeat': 'awaiting-claim',
    'refused': 'draining', 'revoked': 'draining', 'replaced': 'draining', 'deadline': 'draining', 'server-stopping': 'draining', 'peer-ended': 'draining',
    'answered': '-', 'peer-cancelled': 'closed', 'write-stalled': 'closed',
  },
  streaming: {
    'admitted': '-', 'admitted-report-only': '-', 'claim-accepted': '-', 'heartbeat': 'streaming',
    'refused': 'draining', 'revoked': 'draining', 'replaced': 'draining', 'deadline': 'draining', 'server-stopping': 'draining', 'peer-ended': 'draining',
    'answered': '-', 'peer-cancelled': 'closed', 'write-stalled': 'closed',
  },
  reporting: {
    'admitted': '-', 'admitted-report-only': '-', 'claim-accepted': '-', 'heartbeat': 'reporting',
    'refused': 'draining', 'revoked': 'draining', 'replaced': 'draining', 'deadline': 'draining', 'server-stopping': 'draining', 'peer-ended': 'draining',
    'answered': '-', 'peer-cancelled': 'closed', 'write-stalled': 'closed',
  },
  draining: {
    'admitted': '-', 'admitted-report-only': '-', 'claim-accepted': '-', 'heartbeat': '-',
    'refused': '-', 'revoked': '-', 'replaced': '-', 'deadline': '-', 'server-stopping': '-', 'peer-ended': '-',
    'answered': 'closed', 'peer-cancelled': 'closed', 'write-stalled': 'closed',
  },
  closed: {
    'admitted': '-', 'admitted-report-only': '-', 'claim-accepted': '-', 'heartbeat': '-',
    'refused': '-', 'revoked': '-', 'replaced': '-', 'deadline': '-', 'server-stopping': '-', 'peer-ended': '-',
    'answered': '-', 'peer-cancelled': '-', 'write-stalled': '-',
  },
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

test('only a stream whose claim was accepted sends (tasks, credentials, trust); one awaiting its claim, reporting, or ending sends nothing unasked', () => {
  assert.deepEqual(STREAM_STATES.filter(maySend), ['streaming']);
});

test('a task can reach a stream only through an accepted claim: no event takes an opening stream straight to streaming', () => {
  for (const event of STREAM_EVENTS) assert.notEqual(nextStreamState('opening', event), 'streaming', event);
  for (const event of STREAM_EVENTS) assert.notEqual(nextStreamState('reporting', event), 'streaming', event);
  const into = STREAM_STATES.flatMap((state) => STREAM_EVENTS.filter((event) => nextStreamState(state, event) === 'streaming' && state !== 'streaming').map((event) => `${state} × ${event}`));
  assert.deepEqual(into, ['awaiting-claim × claim-accepted']);
});
