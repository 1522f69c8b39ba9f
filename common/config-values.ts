import { CtOpsError } from './errors.ts';

/**
 * Typed reading of configuration values, shared by the appliance and agent loaders.
 * A value comes either typed (from TOML) or as text (from an env var or a flag);
 * `where` names its origin ("agent.toml: [agent] heartbeat_interval_secs",
 * "CT_OPS_DATA_DIR") so the error says exactly what to fix.
 */
export type ValueSpec =
  | { kind: 'string'; allowEmpty?: boolean }
  | { kind: 'integer'; min: number; max: number }
  | { kind: 'boolean' }
  | { kind: 'string-list' }
  | { kind: 'string-map' };

export type ValueOf<S extends ValueSpec> = S extends { kind: 'string' }
  ? string
  : S extends { kind: 'integer' }
    ? number
    : S extends { kind: 'boolean' }
      ? boolean
      : S extends { kind: 'string-list' }
        ? string[]
        : Record<string, string>;

function invalid(where: string, expected: string, got: unknown): CtOpsError {
  const shown = typeof got === 'string' ? JSON.stringify(got) : Array.isArray(got) ? 'an array' : typeof got === 'object' && got !== null ? 'a table' : String(got);
  return new CtOpsError('ERR_CONFIG_INVALID', `${where}: expected ${expected}, got ${shown}`, { where });
}

/** Checks a typed value (from TOML). */
export function checkValue<S extends ValueSpec>(spec: S, value: unknown, where: string): ValueOf<S> {
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string') throw invalid(where, 'a string', value);
      if (!spec.allowEmpty && value.trim() === '') throw invalid(where, 'a non-empty string', value);
      return value as ValueOf<S>;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) throw invalid(where, 'an integer', value);
      if (value < spec.min || value > spec.max) throw invalid(where, `an integer from ${spec.min} to ${spec.max}`, value);
      return value as ValueOf<S>;
    case 'boolean':
      if (typeof value !== 'boolean') throw invalid(where, 'true or false', value);
      return value as ValueOf<S>;
    case 'string-list':
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.trim() !== '')) {
        throw invalid(where, 'an array of non-empty strings', value);
      }
      return [...value] as ValueOf<S>;
    case 'string-map':
      if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
        throw invalid(where, 'a table of string values', value);
      }
      return { ...(value as Record<string, string>) } as ValueOf<S>;
  }
}

/** Parses a text value (env var or flag) into the spec's type, then checks it. */
export function parseValue<S extends ValueSpec>(spec: S, text: string, where: string): ValueOf<S> {
  switch (spec.kind) {
    case 'string':
      return checkValue(spec, text, where);
    case 'integer': {
      const trimmed = text.trim();
      if (!/^-?\d+$/.test(trimmed)) throw invalid(where, 'an integer', text);
      return checkValue(spec, Number(trimmed), where);
    }
    case 'boolean': {
      const lowered = text.trim().toLowerCase();
      if (lowered === 'true' || lowered === '1') return true as ValueOf<S>;
      if (lowered === 'false' || lowered === '0') return false as ValueOf<S>;
      throw invalid(where, 'true or false', text);
    }
    case 'string-list':
      return checkValue(spec, text.split(',').map((item) => item.trim()).filter(Boolean), where);
    case 'string-map':
      return checkValue(spec, Object.fromEntries(text.split(',').filter(Boolean).map((pair) => splitPair(pair, where))), where);
  }
}

/** Splits "key:value" (a tag) at the first colon. */
export function splitPair(pair: string, where: string): [string, string] {
  const at = pair.indexOf(':');
  if (at <= 0) throw invalid(where, 'key:value', pair);
  return [pair.slice(0, at).trim(), pair.slice(at + 1).trim()];
}

/** Parses a duration such as 90s, 30m, 12h or 7d into milliseconds. */
export function parseDuration(text: string, where: string): number {
  const match = /^(\d+)\s*([smhd])$/.exec(text.trim());
  if (!match) throw invalid(where, 'a duration such as 30m, 12h or 7d', text);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 's' | 'm' | 'h' | 'd'];
  const ms = Number(match[1]) * unit;
  if (ms <= 0) throw invalid(where, 'a positive duration', text);
  return ms;
}
