import { CtOpsError, type ErrorCode, type ErrorDetails } from '../../common/errors.ts';

/** The inventory failures of the closed catalogue (common/errors.ts). */
export type InventoryErrorCode = Extract<ErrorCode, `ERR_INVENTORY_${string}`>;

export class InventoryError extends CtOpsError {
  constructor(code: InventoryErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(code, message, details, options);
  }
}

/** A parser's verdict that a tool's output is not in the format it expects. */
export function unparsable(source: string, why: string, line?: number): InventoryError {
  return new InventoryError('ERR_INVENTORY_COLLECTOR_FAILED', `${source} output cannot be parsed: ${why}`, { source, reason: 'unparsable', line });
}
