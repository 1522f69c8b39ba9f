/**
 * The one place a bundle request is checked. Both edges (the CLI and the admin API)
 * turn their input into a BundleRequest here; everything after trusts it. Values
 * never reach a shell or PowerShell script: they are only written into agent.toml
 * (TOML-encoded by smol-toml) and JSON, and the rules below keep them printable.
 */
import { parseIngestAddressList, type IngestAddress } from '../../agent/config/address.ts';
import { CtOpsError } from '../../common/errors.ts';
import { idPattern } from '../../common/ids.ts';
import { isTargetArch, isTargetOs, type Target } from './targets.ts';

export type Tags = Readonly<Record<string, string>>;

export type TokenChoice =
  | { readonly mode: 'new'; readonly expiresInMs: number }
  | { readonly mode: 'existing'; readonly id: string; readonly secret: string }
  | { readonly mode: 'none' };

export type TokenMode = TokenChoice['mode'];

export interface BundleRequest {
  readonly target: Target;
  /** The ASCII ingest targets written into agent.toml and the manifest, in the order agents try them (ingestAddresses' targets). */
  readonly addresses: readonly string[];
  /** The addresses as parsed: each one's form for people (display) and its name as given when it reads as another (name.given). */
  readonly ingestAddresses: readonly IngestAddress[];
  readonly tags: Tags;
  readonly label: string;
  readonly token: TokenChoice;
  readonly createdBy: string;
}

export interface BundleRequestInput {
  os: string;
  arch: string;
  /** One ingest address, or several (instances of one appliance on PostgreSQL) in the order agents try them. */
  address: string | readonly string[];
  tags?: Readonly<Record<string, string>>;
  label?: string;
  token?: { mode: 'new'; expiresInMs?: number } | { mode: 'existing'; id: string; secret: string } | { mode: 'none' };
  createdBy: string;
}

export const MAX_TAGS = 32;
export const TAG_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
export const MAX_TAG_VALUE_CHARS = 256;
export const MAX_LABEL_CHARS = 128;
export const TOKEN_ID = idPattern('etk');
export const TOKEN_SECRET = /^tok_[A-Za-z0-9_-]{43}$/;
export const MIN_TOKEN_LIFETIME_MS = 60_000;
export const MAX_TOKEN_LIFETIME_MS = 366 * 86_400_000;
export const DEFAULT_TOKEN_LIFETIME_MS = 7 * 86_400_000;

/** C0/C1 controls, lone surrogates, line/paragraph separators and bidi overrides. */
const UNPRINTABLE = /[\p{Cc}\p{Cs}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u;

function invalid(field: string, message: string): CtOpsError {
  return new CtOpsError('ERR_INVALID_ARGUMENT', `${field}: ${message}`, { field });
}

/** True when the text holds only printable characters (no controls, no bidi overrides). */
export function isPrintable(text: string): boolean {
  return !UNPRINTABLE.test(text);
}

/**
 * One "host:port" or a list of them, exactly as the agent parses `[ingest] addresses`
 * (parseIngestAddressList: a DNS name becomes its ASCII IDNA form, IPv4, bracketed IPv6; 1 to 16,
 * none twice). Throws ERR_INVALID_ARGUMENT { field: 'address' } naming what is wrong.
 */
export function checkAddresses(given: string | readonly string[]): IngestAddress[] {
  const texts = typeof given === 'string' ? [given] : given;
  return parseIngestAddressList(texts.map((text) => ({ text, where: 'address' })), 'address', 'ERR_INVALID_ARGUMENT');
}

export function checkTags(tags: Readonly<Record<string, string>>): Tags {
  const entries = Object.entries(tags);
  if (entries.length > MAX_TAGS) throw invalid('tags', `at most ${MAX_TAGS} tags, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (!TAG_KEY.test(key)) throw invalid('tags', `tag key ${JSON.stringify(key)} must be 1-64 of A-Z a-z 0-9 _ . -`);
    if (typeof value !== 'string') throw invalid('tags', `tag ${key} must be a string`);
    if ([...value].length > MAX_TAG_VALUE_CHARS) throw invalid('tags', `tag ${key} is longer than ${MAX_TAG_VALUE_CHARS} characters`);
    if (!isPrintable(value)) throw invalid('tags', `tag ${key} holds a control character`);
  }
  return Object.freeze(Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

/** Turns repeated "key:value" flags into tags; a repeated key is an error, not a silent overwrite. */
export function tagsFromPairs(pairs: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf(':');
    if (at <= 0) throw invalid('tags', `expected key:value, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, at).trim();
    if (Object.hasOwn(tags, key)) throw invalid('tags', `tag ${key} is given twice`);
    tags[key] = pair.slice(at + 1).trim();
  }
  return tags;
}

function checkText(field: string, text: string, maxChars: number): string {
  if ([...text].length > maxChars) throw invalid(field, `longer than ${maxChars} characters`);
  if (!isPrintable(text)) throw invalid(field, 'holds a control character');
  return text;
}

function checkToken(token: BundleRequestInput['token']): TokenChoice {
  const choice = token ?? { mode: 'new' };
  switch (choice.mode) {
    case 'new': {
      const expiresInMs = choice.expiresInMs ?? DEFAULT_TOKEN_LIFETIME_MS;
      if (!Number.isInteger(expiresInMs) || expiresInMs < MIN_TOKEN_LIFETIME_MS || expiresInMs > MAX_TOKEN_LIFETIME_MS) {
        throw invalid('expires', 'the token lifetime must be from 1 minute to 366 days');
      }
      return { mode: 'new', expiresInMs };
    }
    case 'existing':
      if (!TOKEN_ID.test(choice.id)) throw invalid('token', `${JSON.stringify(choice.id)} is not an enrolment token id (etk_...)`);
      if (!TOKEN_SECRET.test(choice.secret.trim())) throw invalid('token_secret', 'not an enrolment token secret (tok_...)');
      return { mode: 'existing', id: choice.id, secret: choice.secret.trim() };
    case 'none':
      return { mode: 'none' };
    default:
      throw invalid('token', 'expected new, an existing token id, or none');
  }
}

export function parseBundleRequest(input: BundleRequestInput): BundleRequest {
  if (!isTargetOs(input.os)) throw invalid('os', `expected linux, darwin or windows, got ${JSON.stringify(input.os)}`);
  if (!isTargetArch(input.arch)) throw invalid('arch', `expected x64 or arm64, got ${JSON.stringify(input.arch)}`);
  const ingestAddresses = checkAddresses(input.address);
  return Object.freeze({
    target: Object.freeze({ os: input.os, arch: input.arch }),
    addresses: Object.freeze(ingestAddresses.map((address) => address.target)),
    ingestAddresses: Object.freeze(ingestAddresses),
    tags: checkTags(input.tags ?? {}),
    label: checkText('label', input.label ?? '', MAX_LABEL_CHARS),
    token: Object.freeze(checkToken(input.token)),
    createdBy: checkText('created_by', input.createdBy, 64),
  });
}
