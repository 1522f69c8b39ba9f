/**
 * A draw of `random` clamped to [0, 1): a misbehaving source (NaN, ∞, 1, negative) cannot take a
 * wait drawn from it out of its window. Shared by the agent's backoff (agent/lifecycle/backoff.ts)
 * and the stopping appliance's retry hints (appliance/heartbeat/stopping.ts).
 *
 * @param random uniform in [0, 1) (Math.random; a seeded source in tests).
 */
export function unitDraw(random: () => number): number {
  const value = random();
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), 1 - Number.EPSILON) : 0;
}
