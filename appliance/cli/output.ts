/** Prints rows as JSON (for scripts) or as an aligned table (for people). */
export function printRows(rows: readonly Record<string, unknown>[], columns: readonly string[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  const cell = (value: unknown): string => (value === null || value === undefined ? '-' : typeof value === 'object' ? JSON.stringify(value) : String(value));
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => cell(row[column]).length)));
  const line = (values: string[]): string => values.map((value, index) => value.padEnd(widths[index]!)).join('  ').trimEnd();
  process.stdout.write(`${line(columns.map((column) => column.toUpperCase()))}\n`);
  for (const row of rows) process.stdout.write(`${line(columns.map((column) => cell(row[column])))}\n`);
}

/** Prints one object as JSON or as "key: value" lines. */
export function printObject(value: Record<string, unknown>, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    return;
  }
  for (const [key, field] of Object.entries(value)) {
    process.stdout.write(`${key}: ${field !== null && typeof field === 'object' ? JSON.stringify(field) : String(field ?? '-')}\n`);
  }
}
