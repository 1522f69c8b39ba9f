/**
 * The `exp` claim of a JWT, read without verifying it, recorded in agent_state.json for people
 * reading it. The agent never compares it with its own clock: the appliance alone judges a JWT
 * (it refuses an expired one, and pushes a fresh one before expiry), so a wrong host clock
 * cannot make the agent discard a valid credential.
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
