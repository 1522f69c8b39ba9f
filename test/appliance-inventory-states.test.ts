import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextScanStatus, SCAN_EVENTS, SCAN_STATUSES, type ScanEvent } from '../appliance/inventory/scan-states.ts';
import { INVENTORY_STREAM_EVENTS, INVENTORY_STREAM_STATES, nextInventoryStreamState, type InventoryStreamEvent } from '../appliance/inventory/stream-states.ts';
import type { ScanStatus } from '../appliance/model/inventory.ts';

test('the scan lifecycle: every status × event, written out; completed and failed are final', () => {
  const expected: Record<ScanStatus, Partial<Record<ScanEvent, ScanStatus>>> = {
    receiving: { restarted: 'receiving', last_chunk_stored: 'completed', refused: 'failed', over_limits: 'failed', cut_off: 'abandoned', appliance_started: 'abandoned', went_quiet: 'abandoned' },
    abandoned: { restarted: 'receiving', resumed: 'receiving', over_limits: 'failed' },
    completed: {},
    failed: {},
  };
  for (const status of SCAN_STATUSES) {
    for (const event of SCAN_EVENTS) {
      assert.equal(nextScanStatus(status, event), expected[status][event], `${status} + ${event}`);
    }
  }
});

test('only a stored last chunk completes a scan: nothing else can lead to completed', () => {
  for (const status of SCAN_STATUSES) {
    for (const event of SCAN_EVENTS) {
      if (nextScanStatus(status, event) === 'completed') assert.deepEqual([status, event], ['receiving', 'last_chunk_stored']);
    }
  }
});

test('the inventory stream lifecycle: every state × event, written out; closed takes no event, so the call is answered once', () => {
  const open = { chunk_stored: 'receiving', last_chunk_stored: 'closed', refused: 'closed', ended: 'closed', broke: 'closed' } as const;
  const expected: Record<string, Partial<Record<InventoryStreamEvent, string>>> = {
    opening: { authenticated: 'awaiting-first-chunk', refused: 'closed', broke: 'closed' },
    'awaiting-first-chunk': open,
    receiving: open,
    closed: {},
  };
  for (const state of INVENTORY_STREAM_STATES) {
    for (const event of INVENTORY_STREAM_EVENTS) {
      assert.equal(nextInventoryStreamState(state, event), expected[state]![event], `${state} + ${event}`);
    }
  }
});
