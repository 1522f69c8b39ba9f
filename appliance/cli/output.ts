import { escapeForTerminal, escapeUnsafeJson, terminalJson } from '../../common/agent-text.ts';

/**
 * Every CLI view prints through these: values come from the appliance, and many of them from
 * agents (hostnames, versions, package names, task output), so control, bidirectional and line
 * breaking characters are shown escaped, never sent raw to the admin's terminal.
 */

/** One value as a single terminal-safe line: '-' for none, objects as JSON. */
function cell(value: unknown): string {
  if (value === null || value === undefined) return '-';
  return typeof value === 'object' ? escapeUnsafeJson(JSON.stringify(value)) : escapeForTerminal(String(value));
}

/** Prints rows as JSON (for scripts) or as an aligned table (for people). */
export function printRows(rows: readonly Record<string, unknown>[], columns: readonly string[], json: boolean): void {
  if (json) {
    process.stdout.write(terminalJson(rows));
    return;
  }
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => cell(row[column]).length)));
  const line = (values: string[]): string => values.map((value, index) => value.padEnd(widths[index]!)).join('  ').trimEnd();
  process.stdout.write(`${line(columns.map((column) => column.toUpperCase()))}\n`);
  for (const row of rows) process.stdout.write(`${line(columns.map((column) => cell(row[column])))}\n`);
}

/** Prints one object as JSON or as "key: value" lines. */
export function printObject(value: Record<string, unknown>, json: boolean): void {
  if (json) {
    process.stdout.write(terminalJson(value));
    return;
  }
  for (const [key, field] of Object.entries(value)) process.stdout.write(`${escapeForTerminal(key)}: ${cell(field)}\n`);
}

/** Prints a sentence built from appliance values, each escaped as one line (`hosts delete`, `tokens create`). */
export function printLine(text: string): void {
  process.stdout.write(`${escapeForTerminal(text)}\n`);
}
