import fc from 'fast-check';
import protobuf from 'protobufjs';
import { INGEST_PROTO_TEXT } from '../../proto/gen/ingest-proto-text.ts';

/**
 * What a fuzz test runs: a fixed seed (so CI runs the same cases every time and a failure can be
 * replayed) and a bounded number of runs, both overridable from the environment: FUZZ_SEED=… to
 * replay or explore, FUZZ_RUNS=… for a longer campaign. Printed, so a CI log names the seed.
 */
export function fuzzSettings(what: string, defaultRuns: number, defaultSeed = 0x14_f0_22): { seed: number; numRuns: number; includeErrorInReport: true } {
  const seed = process.env.FUZZ_SEED === undefined ? defaultSeed : Number(process.env.FUZZ_SEED);
  const runs = process.env.FUZZ_RUNS === undefined ? defaultRuns : Number(process.env.FUZZ_RUNS);
  if (!Number.isSafeInteger(seed)) throw new Error(`FUZZ_SEED must be an integer, not ${process.env.FUZZ_SEED}`);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error(`FUZZ_RUNS must be a positive integer, not ${process.env.FUZZ_RUNS}`);
  console.log(`fuzz ${what}: seed ${seed}, ${runs} runs (FUZZ_SEED, FUZZ_RUNS to change)`);
  // The assertion's own message goes with the counterexample: it says which status came back.
  return { seed, numRuns: runs, includeErrorInReport: true };
}

/** The ingest contract's message types, parsed from the text every build embeds (proto/). */
export function ingestTypes(): protobuf.Root {
  const root = protobuf.parse(INGEST_PROTO_TEXT, { keepCase: true }).root;
  root.resolveAll();
  return root;
}

/** Text a field may hold: short and printable, any Unicode, control and NUL characters, lone surrogates (invalid UTF-8 once encoded), or huge. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom('\u0000', '\u001b', '\u007f', '\u0085', '\u202e', '\ufeff', '\ufffd', '\n', '%', '"', '\\'), maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)), minLength: 1, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom(256, 1025, 4097, 65_536, 70_000).chain((length) => fc.constant('x'.repeat(length))) },
);

/** Bytes: empty, the lengths keys, nonces, digests and signatures have (and one off), or any. */
const hostileBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constantFrom(0, 1, 15, 16, 31, 32, 33, 63, 64, 65).chain((length) => fc.uint8Array({ minLength: length, maxLength: length })),
  fc.uint8Array({ maxLength: 300 }),
);

const INT32_BOUNDS = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31)];
const UINT32_BOUNDS = [0, 1, 2 ** 32 - 1];
/** 64-bit values as decimal strings (protobufjs encodes them through Long): 0, ±1, 2^53 ± 1, the extremes. */
const INT64_BOUNDS = ['0', '1', '-1', '9007199254740991', '9007199254740993', '9223372036854775807', '-9223372036854775808'];
const UINT64_BOUNDS = ['0', '1', '9007199254740993', '18446744073709551615'];

function scalar(type: string): fc.Arbitrary<unknown> {
  switch (type) {
    case 'string':
      return hostileString;
    case 'bytes':
      return hostileBytes;
    case 'bool':
      return fc.boolean();
    case 'float':
    case 'double':
      return fc.oneof(fc.constantFrom(0, -0, 50, 100, 100.5, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 3.4e38), fc.double());
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return fc.oneof(fc.constantFrom(...INT32_BOUNDS), fc.integer());
    case 'uint32':
    case 'fixed32':
      return fc.oneof(fc.constantFrom(...UINT32_BOUNDS), fc.nat());
    case 'uint64':
    case 'fixed64':
      return fc.oneof(fc.constantFrom(...UINT64_BOUNDS), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String));
    default:
      return fc.oneof(fc.constantFrom(...INT64_BOUNDS), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String));
  }
}

/** Any value of a field's type; an enum field also takes numbers it does not name. */
function fieldValue(field: protobuf.Field, depth: number): fc.Arbitrary<unknown> {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) return fc.oneof(fc.constantFrom(...Object.values(resolved.values)), fc.integer({ min: -2, max: 40 }));
  if (resolved instanceof protobuf.Type) return protoMessage(resolved, depth + 1);
  return scalar(field.type);
}

/**
 * Any message of `type` as protobufjs's fromObject takes it, built from the contract's own field
 * types: each field missing or set (repeated fields up to 6 elements, or 70 to pass per-message
 * bounds; maps with hostile keys); nested messages up to 3 levels. What the wire can carry that
 * protobufjs would never encode (wrong wire types, truncation) is rawFrames' business.
 */
export function protoMessage(type: protobuf.Type, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of type.fieldsArray) {
    if (depth >= 3 && field.resolvedType instanceof protobuf.Type) continue;
    if (field instanceof protobuf.MapField) {
      fields[field.name] = fc.dictionary(hostileString, fieldValue(field, depth), { maxKeys: 6 });
    } else if (field.repeated) {
      const element = fieldValue(field, depth);
      fields[field.name] = fc.oneof({ weight: 9, arbitrary: fc.array(element, { maxLength: 6 }) }, { weight: 1, arbitrary: fc.array(element, { minLength: 70, maxLength: 70 }) });
    } else {
      fields[field.name] = fieldValue(field, depth);
    }
  }
  return fc.record(fields, { requiredKeys: [] });
}

/** The wire bytes of `object` as a message of `type`. */
export function encodeMessage(type: protobuf.Type, object: Record<string, unknown>): Buffer {
  return Buffer.from(type.encode(type.fromObject(object)).finish());
}
