import { CtOpsError } from '../../common/errors.ts';

/**
 * A rollout group's maintenance window (issue 12: "optional maintenance window per group"): the
 * weekly hours in which the group's hosts are offered the release. Written
 *   [DAYS ]HH:MM-HH:MM[ TIME-ZONE]
 * DAYS is a comma list of days or day ranges (Mon,Wed or Mon-Fri or Sat-Mon; default every day);
 * times are 24-hour wall-clock times in TIME-ZONE, an IANA name (default UTC), with the end
 * exclusive (24:00 for the day's end); an end before the start runs past midnight into the next day (22:00-06:00), and
 * the days name the day a window opens. Wall-clock time follows the zone's daylight saving changes,
 * as a cron table's does: a window inside a skipped hour is shorter that day.
 */
export interface MaintenanceWindow {
  /** Days the window opens, 0 = Sunday … 6 = Saturday. */
  readonly days: ReadonlySet<number>;
  /** Minutes after local midnight. */
  readonly startMinute: number;
  readonly endMinute: number;
  readonly timeZone: string;
  /** The canonical text (what is stored and shown). */
  readonly text: string;
}

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
/** The order days are written in (ISO 8601's week: Monday first). */
const WEEK = [1, 2, 3, 4, 5, 6, 0] as const;
/** A time zone name as written and stored (IANA names, UTC, offsets). */
const ZONE_SOURCE = '[A-Za-z0-9_+:/-]{1,64}';
const WINDOW = new RegExp(`^(?:([A-Za-z,-]+) )?([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})(?: (${ZONE_SOURCE}))?$`);
/** One formatter per zone: building one costs far more than formatting (offers are computed per ack). */
const FORMATTERS = new Map<string, Intl.DateTimeFormat>();

/**
 * Parses a window's text (shape above; surrounding and repeated spaces ignored). Throws
 * ERR_INVALID_ARGUMENT naming what is wrong: an unknown day, an hour above 23 or minute above 59
 * (24:00 only as an end), start equal to end, a time zone this Node's ICU does not know or would not
 * read back from its own canonical name.
 */
export function parseMaintenanceWindow(input: string): MaintenanceWindow {
  const text = input.trim().replace(/\s+/g, ' ');
  const match = WINDOW.exec(text);
  if (!match) throw invalid(input, 'expected [DAYS ]HH:MM-HH:MM[ TIME-ZONE], e.g. "Mon-Fri 22:00-06:00 Europe/Berlin"');
  const [, dayList, startHour, startMin, endHour, endMin, zone] = match;
  const startMinute = minuteOfDay(input, startHour!, startMin!, false);
  const endMinute = minuteOfDay(input, endHour!, endMin!, true);
  if (startMinute === endMinute) throw invalid(input, 'the window opens and closes at the same time');
  const timeZone = canonicalZone(input, zone ?? 'UTC');
  const days = dayList === undefined ? new Set([0, 1, 2, 3, 4, 5, 6]) : parseDays(input, dayList);
  const dayText = days.size === 7 ? '' : `${dayRuns(days)} `;
  return { days, startMinute, endMinute, timeZone, text: `${dayText}${startHour}:${startMin}-${endHour}:${endMin} ${timeZone}` };
}

/** Whether `window` is open at `at` (ms since the epoch). */
export function isWindowOpen(window: MaintenanceWindow, at: number): boolean {
  const { day, minute } = localTime(window.timeZone, at);
  if (window.startMinute < window.endMinute) return window.days.has(day) && minute >= window.startMinute && minute < window.endMinute;
  // Past midnight: the evening part belongs to today's window, the morning part to yesterday's.
  return (minute >= window.startMinute && window.days.has(day)) || (minute < window.endMinute && window.days.has((day + 6) % 7));
}

function localTime(timeZone: string, at: number): { day: number; minute: number } {
  let formatter = FORMATTERS.get(timeZone);
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    FORMATTERS.set(timeZone, formatter);
  }
  const parts = Object.fromEntries(formatter.formatToParts(at).map((part) => [part.type, part.value]));
  return { day: DAY_NAMES.indexOf(parts.weekday as (typeof DAY_NAMES)[number]), minute: Number(parts.hour) * 60 + Number(parts.minute) };
}

function minuteOfDay(input: string, hour: string, minute: string, end: boolean): number {
  const dayEnd = end && hour === '24' && minute === '00';
  if (!dayEnd && (Number(hour) > 23 || Number(minute) > 59)) throw invalid(input, `${hour}:${minute} is not a time of day (00:00–23:59, or 24:00 as an end)`);
  return Number(hour) * 60 + Number(minute);
}

/** The zone's canonical name in this Node's ICU; only one that reads back as itself is stored, so a stored window parses again. */
function canonicalZone(input: string, zone: string): string {
  const resolve = (name: string): string | undefined => {
    try {
      return new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
    } catch {
      return undefined;
    }
  };
  const canonical = resolve(zone);
  if (canonical === undefined) throw invalid(input, `${JSON.stringify(zone)} is not a time zone this appliance knows (an IANA name such as Europe/Berlin, or UTC)`);
  if (!new RegExp(`^${ZONE_SOURCE}$`).test(canonical) || resolve(canonical) !== canonical) throw invalid(input, `${JSON.stringify(zone)} has no name this appliance reads back (${JSON.stringify(canonical)}); give an IANA name`);
  return canonical;
}

function parseDays(input: string, list: string): Set<number> {
  const days = new Set<number>();
  for (const item of list.split(',')) {
    const [first, last, extra] = item.split('-').map((name) => dayIndex(input, name));
    if (extra !== undefined) throw invalid(input, `${JSON.stringify(item)} is not a day or a day range`);
    // A range may wrap the week's end (Sat-Mon).
    for (let day = first!; ; day = (day + 1) % 7) {
      days.add(day);
      if (day === (last ?? first)) break;
    }
  }
  return days;
}

/** The days as runs in week order: Mon-Fri, Sat-Sun, Mon,Wed. */
function dayRuns(days: ReadonlySet<number>): string {
  const runs: number[][] = [];
  for (const [index, day] of WEEK.entries()) {
    if (!days.has(day)) continue;
    const last = runs.at(-1);
    if (last !== undefined && days.has(WEEK[index - 1]!)) last.push(day);
    else runs.push([day]);
  }
  return runs.map((run) => (run.length === 1 ? DAY_NAMES[run[0]!] : run.length === 2 ? `${DAY_NAMES[run[0]!]},${DAY_NAMES[run[1]!]}` : `${DAY_NAMES[run[0]!]}-${DAY_NAMES[run.at(-1)!]}`)).join(',');
}

function dayIndex(input: string, name: string): number {
  const index = DAY_NAMES.findIndex((day) => day.toLowerCase() === name.toLowerCase());
  if (index < 0) throw invalid(input, `${JSON.stringify(name)} is not a day (${DAY_NAMES.join(', ')})`);
  return index;
}

function invalid(input: string, why: string): CtOpsError {
  return new CtOpsError('ERR_INVALID_ARGUMENT', `maintenance window ${JSON.stringify(input.slice(0, 100))}: ${why}`);
}
