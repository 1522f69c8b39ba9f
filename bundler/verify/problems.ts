import { CtOpsError, STATUS, type ErrorCode } from '../../common/errors.ts';

export type ProblemCode = Extract<ErrorCode, 'ERR_BUNDLE_ENTRY_INVALID' | 'ERR_BUNDLE_SIGNATURE_INVALID' | 'ERR_BUNDLE_TAMPERED' | 'ERR_BUNDLE_ZIP_AMBIGUOUS' | 'ERR_BUNDLE_ZIP_TOO_LARGE'>;

const PROBLEM_CODES: ReadonlySet<ErrorCode> = new Set<ProblemCode>(['ERR_BUNDLE_ENTRY_INVALID', 'ERR_BUNDLE_SIGNATURE_INVALID', 'ERR_BUNDLE_TAMPERED', 'ERR_BUNDLE_ZIP_AMBIGUOUS', 'ERR_BUNDLE_ZIP_TOO_LARGE']);

/**
 * One reason a bundle fails verification; `path` is the entry concerned, when there
 * is one; `reason` names the structural rule a zip broke (bundler/zip/structure.ts).
 */
export interface VerifyProblem {
  readonly code: ProblemCode;
  readonly message: string;
  readonly path?: string;
  readonly reason?: string;
}

/** The problem a bundle error stands for, or undefined when the error is not about the bundle. */
export function problemOf(error: unknown): VerifyProblem | undefined {
  if (!(error instanceof CtOpsError) || !PROBLEM_CODES.has(error.code)) return undefined;
  const { path, reason } = error.details;
  return { code: error.code as ProblemCode, message: error.message, ...(typeof path === 'string' ? { path } : {}), ...(typeof reason === 'string' ? { reason } : {}) };
}

/**
 * The exit code of a verification: 0 when clean, else that of the first problem.
 * Problems are recorded in check order (structure, layout, signature, content), so an
 * ambiguous or unsafe zip exits 65, a bad or foreign signature 77, tampered content 65.
 */
export function exitCodeOf(problems: readonly VerifyProblem[]): number {
  return problems.length === 0 ? 0 : STATUS[problems[0]!.code].exit;
}
