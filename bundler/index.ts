/** The bundler's public surface: build a bundle, verify one. */
export { buildBundle, type BuildEnvironment, type BuiltBundle } from './build/build.ts';
export { withdrawBundleToken, type TokenAuthority } from './build/token.ts';
export { bundleView, type BundleView } from './build/view.ts';
export { ALL_TARGETS, ARCHITECTURES, OPERATING_SYSTEMS, bundleBaseName, type Target } from './lib/targets.ts';
export { parseBundleRequest, type BundleRequest, type BundleRequestInput } from './lib/validate.ts';
export { verifyBundle, type VerifyReport } from './verify/verify.ts';
export type { VerifyProblem } from './verify/problems.ts';
