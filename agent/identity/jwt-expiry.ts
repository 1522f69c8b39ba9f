/** A JWT closer than this to its expiry is treated as expired, so a connect never races it. */
export const JWT_EXPIRY_MARGIN_SECS = 60;

/**
 * The `exp` claim of a JWT, read without verifying it: the agent only needs to know
 * whether its own credential is worth presenting; the appliance does the verifying.
 */
export function jwtExpiry(jwt: string): number | undefined {
  const payload = jwt.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    const exp = (claims as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a credential expiring at `expiresUnix` may still be used at `nowUnix`. */
export function isCredentialUsable(expiresUnix: number | undefined, nowUnix: number): boolean {
  return expiresUnix !== undefined && expiresUnix - nowUnix >= JWT_EXPIRY_MARGIN_SECS;
}
