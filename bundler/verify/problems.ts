import { STATUS, type ErrorCode } from '../../common/errors.ts';

export type ProblemCode = Extract<ErrorCode, 'ERR_BUNDLE_ENTRY_INVALID' | 'ERR_BUNDLE_SIGNATURE_INVALID' | 'ERR_BUNDLE_TAMPERED'>;

/** One reason a bundle fails verification; `path` is the zip entry concerned, when there is one. */
export interface VerifyProblem {
  readonly code: ProblemCode;
  readonly message: string;
  readonly path?: string;
}

/**
 * The exit code of a verification: 0 when clean, else that of the first problem.
 * Problems are recorded in check order (layout, signature, content), so an unsafe
 * zip exits 65, a bad or foreign signature 77, tampered content 65.
 */
export function exitCodeOf(problems: readonly VerifyProblem[]): number {
  return problems.length === 0 ? 0 : STATUS[problems[0]!.code].exit;
}
