export declare const BUILD_IMAGE_ERRORS: Readonly<Record<string, { readonly exit: number; readonly summary: string }>>;
export declare class BuildImageError extends Error {
  constructor(code: string, message: string, options?: { cause?: unknown });
  readonly code: string;
  get exitCode(): number;
}
