import { readFile, stat } from 'node:fs/promises';
import { InventoryError } from './errors.ts';
import { NOT_AVAILABLE } from './run.ts';

/** A package database file as UTF-8 text; NOT_AVAILABLE when absent, an error over the cap. */
export async function readDatabaseFile(path: string, maxOutputBytes: number): Promise<string | typeof NOT_AVAILABLE> {
  try {
    const { size } = await stat(path);
    if (size > maxOutputBytes) {
      throw new InventoryError('ERR_INVENTORY_OUTPUT_TOO_LARGE', `${path} is larger than ${maxOutputBytes} bytes`, { source: path, max_output_bytes: maxOutputBytes });
    }
    return await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof InventoryError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return NOT_AVAILABLE;
    throw new InventoryError('ERR_INVENTORY_COLLECTOR_FAILED', `${path} cannot be read: ${(error as Error).message}`, { source: path }, { cause: error });
  }
}
