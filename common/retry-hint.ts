/**
 * The retry hint of a refused call: gRPC trailing metadata `retry-after-ms`, a whole number of
 * milliseconds the client must wait at least before calling again. Sent with any error whose
 * details carry retry_after_ms (appliance/grpc/status.ts): RESOURCE_EXHAUSTED
 * (ERR_REGISTER_THROTTLED, ERR_STREAM_RATE_LIMITED), UNAVAILABLE from a stopping appliance
 * (ERR_INGEST_UNREACHABLE, appliance/heartbeat/stopping.ts) and ERR_HOST_IDENTITY_CONFLICT;
 * docs/errors.md describes it.
 */
export const RETRY_AFTER_MS_METADATA = 'retry-after-ms';

/** The longest hint a client honours, so a wrong or hostile value cannot park it for days. */
export const MAX_RETRY_AFTER_MS = 15 * 60_000;

/** The hint from the metadata values of RETRY_AFTER_MS_METADATA, clamped to 0…MAX; undefined when absent or malformed. */
export function parseRetryAfterMs(values: readonly (string | Buffer)[]): number | undefined {
  const text = values[0]?.toString();
  if (text === undefined || !/^\d{1,12}$/.test(text)) return undefined;
  return Math.min(Number(text), MAX_RETRY_AFTER_MS);
}
