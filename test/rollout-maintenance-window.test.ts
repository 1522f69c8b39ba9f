/**
 * Rollout groups' maintenance windows (appliance/releases/maintenance-window.ts): the text an admin
 * writes, its canonical form, and whether a window is open at an instant: days, past midnight,
 * time zones and their daylight saving changes (the zone's wall clock, as cron keeps it).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWindowOpen, parseMaintenanceWindow } from '../appliance/releases/maintenance-window.ts';

const at = (iso: string): number => Date.parse(iso);

describe('maintenance windows', () => {
  it('writes each window one way: days as week-ordered runs, the zone named (UTC when none)', () => {
    for (const [written, canonical] of [
      ['Mon-Fri 22:00-06:00 Europe/Berlin', 'Mon-Fri 22:00-06:00 Europe/Berlin'],
      ['  sat,SUN   01:00-05:00 ', 'Sat,Sun 01:00-05:00 UTC'],
      ['Sat-Mon 01:00-05:00', 'Mon,Sat,Sun 01:00-05:00 UTC'],
      ['Mon,Wed,Thu,Fri 10:00-11:00 utc', 'Mon,Wed-Fri 10:00-11:00 UTC'],
      ['Mon-Sun 00:00-23:59', '00:00-23:59 UTC'],
      ['Sat 00:00-24:00', 'Sat 00:00-24:00 UTC'],
    ]) {
      assert.equal(parseMaintenanceWindow(written!).text, canonical, written);
      assert.equal(parseMaintenanceWindow(canonical!).text, canonical, 'the canonical text reads back as itself');
    }
  });

  it('refuses what is not a window, saying what is wrong', () => {
    for (const [written, why] of [
      ['22-06', /expected \[DAYS \]HH:MM-HH:MM/],
      ['24:00-06:00', /24:00 is not a time of day/],
      ['Mon-Fri 22:00-24:01', /24:01 is not a time of day/],
      ['Mon 10:60-11:00', /10:60 is not a time of day/],
      ['Mon-Tue-Wed 10:00-11:00', /"Mon-Tue-Wed" is not a day or a day range/],
      ['Someday 10:00-11:00', /"Someday" is not a day/],
      ['Mon, 10:00-11:00', /"" is not a day|expected/],
      ['10:00-10:00', /opens and closes at the same time/],
      ['10:00-11:00 Europe/Atlantis', /"Europe\/Atlantis" is not a time zone/],
    ] as const) {
      assert.throws(() => parseMaintenanceWindow(written), (error: Error & { code?: string }) => error.code === 'ERR_INVALID_ARGUMENT' && why.test(error.message), written);
    }
  });

  it('24:00 ends a window at the day\'s end: Saturday 00:00-24:00 is all of Saturday and nothing of Sunday', () => {
    const window = parseMaintenanceWindow('Sat 00:00-24:00');
    assert.equal(isWindowOpen(window, at('2026-12-05T00:00:00Z')), true);
    assert.equal(isWindowOpen(window, at('2026-12-05T23:59:59Z')), true);
    assert.equal(isWindowOpen(window, at('2026-12-06T00:00:00Z')), false);
  });

  it('a window past midnight belongs to the day it opens: Monday 22:00 to Tuesday 02:00, not Tuesday night', () => {
    const window = parseMaintenanceWindow('Mon 22:00-02:00');
    // 2026-11-30 is a Monday.
    assert.equal(isWindowOpen(window, at('2026-11-30T21:59:59Z')), false);
    assert.equal(isWindowOpen(window, at('2026-11-30T22:00:00Z')), true);
    assert.equal(isWindowOpen(window, at('2026-12-01T01:59:59Z')), true);
    assert.equal(isWindowOpen(window, at('2026-12-01T02:00:00Z')), false, 'the end is exclusive');
    assert.equal(isWindowOpen(window, at('2026-12-01T23:00:00Z')), false, 'Tuesday night is no window');
    assert.equal(isWindowOpen(window, at('2026-12-07T00:30:00Z')), false, 'nor Monday early morning (Sunday had none)');
  });

  it("keeps the zone's wall clock across daylight saving changes", () => {
    const window = parseMaintenanceWindow('Sun 01:00-04:00 Europe/Berlin');
    // Winter (UTC+1): 01:00 local is 00:00 UTC.
    assert.equal(isWindowOpen(window, at('2026-01-04T00:00:00Z')), true);
    assert.equal(isWindowOpen(window, at('2026-01-03T23:59:00Z')), false);
    // Summer (UTC+2): 01:00 local is 23:00 UTC on Saturday.
    assert.equal(isWindowOpen(window, at('2026-07-04T23:00:00Z')), true);
    assert.equal(isWindowOpen(window, at('2026-07-05T02:00:00Z')), false, '04:00 local');
    // 2026-03-29 02:00 local does not exist: the clock goes from 02:00 CET to 03:00 CEST.
    const skipped = parseMaintenanceWindow('Sun 02:00-03:00 Europe/Berlin');
    for (let minute = 0; minute < 24 * 60; minute += 15) {
      assert.equal(isWindowOpen(skipped, at('2026-03-29T00:00:00Z') + minute * 60_000), false, `the skipped hour never comes (${minute} min)`);
    }
    assert.equal(isWindowOpen(skipped, at('2026-04-05T00:30:00Z')), true, 'it does the next Sunday (02:30 CEST)');
  });

  it('a zone ahead of UTC opens on its own day: Friday in Tokyo is Thursday in UTC', () => {
    const window = parseMaintenanceWindow('Fri 03:00-04:00 Asia/Tokyo');
    assert.equal(isWindowOpen(window, at('2026-12-03T18:30:00Z')), true, 'Thursday 18:30 UTC is Friday 03:30 JST');
    assert.equal(isWindowOpen(window, at('2026-12-04T18:30:00Z')), false, 'Saturday in Tokyo');
  });
});
