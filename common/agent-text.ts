import { CtOpsError, type ErrorDetails } from './errors.ts';

/**
 * The one rule for text that comes from an agent (or any other untrusted peer) and is later shown
 * to an admin: hostnames, versions, tags, package fields, task output. Such text reaches terminals
 * (`hosts list`, `tasks show`) and, later, the console, where control sequences run: ESC/CSI/OSC
 * set the window title, clear the screen or draw fake lines; bidirectional formatting characters
 * reorder what is shown ("Trojan Source", CVE-2021-42574).
 *
 * Unsafe, single line: every C0 and C1 control character and DEL (Unicode category Cc), the
 * bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), the line and
 * paragraph separators U+2028 and U+2029, and lone surrogates (category Cs). The bidirectional
 * marks (U+200E, U+200F, U+061C) stay allowed: they cannot reorder a run of text, and real
 * package and publisher names from right-to-left locales carry them.
 * Multi-line text (task output) may also hold tab, line feed and carriage return.
 *
 * The rule is applied twice: refused at the ingest edge (checkAgentText), and escaped on output
 * (escapeForTerminal in CLI tables, escapeUnsafeJson in `--json` and in every JSON answer of the
 * admin API) so text stored before the edge refused it, or from any other path, still cannot
 * drive a terminal or a page.
 */
const UNSAFE_SINGLE_LINE = /[\p{Cc}\p{Cs}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const UNSAFE_MULTILINE = /[^\P{Cc}\t\n\r]|[\p{Cs}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
/** What JSON.stringify leaves raw: it escapes C0 and lone surrogates itself. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Printable single-line text, the shape of the descriptive fields an agent reports (hostname,
 * versions, tag keys): letters with their combining marks (Devanagari, Thai and other scripts
 * need them), digits, punctuation, symbols and the space.
 */
export const PRINTABLE_TEXT = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]+$/u;
const NOT_PRINTABLE = /[^\p{L}\p{M}\p{N}\p{P}\p{S} ]/gu;

/**
 * A descriptive fact from an agent (a hostname, an OS release) made displayable instead of refused:
 * a machine's hostname is whatever sethostname accepted, and one odd character must not keep the
 * host from streaming. Every character outside PRINTABLE_TEXT (controls, bidirectional formatting,
 * other spaces) becomes U+FFFD; cut to `max` code units; `placeholder` when nothing is left.
 */
export function cleanAgentText(value: string, max: number, placeholder: string): string {
  // Cut without leaving half a surrogate pair at the end.
  const cleaned = value.replace(NOT_PRINTABLE, '\uFFFD').slice(0, max).replace(/[\uD800-\uDBFF]$/, '');
  return cleaned.trim() === '' ? placeholder : cleaned;
}

export interface TextRule {
  /** The most UTF-16 code units allowed. */
  readonly max: number;
  /** Refuse the empty string. */
  readonly required?: boolean;
  /** Allow tab, line feed and carriage return (task output); stored, and escaped on output. */
  readonly multiline?: boolean;
  /** A stricter shape the whole value must match (ids, os and arch names). */
  readonly pattern?: RegExp;
}

/** What breaks the rule's length or character checks: 'too_long', or the first refused character; undefined when neither does. */
function textProblem(value: string, rule: TextRule): 'too_long' | { unsafe: string } | undefined {
  if (value.length > rule.max) return 'too_long';
  const unsafe = (rule.multiline ? UNSAFE_MULTILINE : UNSAFE_SINGLE_LINE).exec(value);
  return unsafe ? { unsafe: unsafe[0] } : undefined;
}

/**
 * Why single-line text of at most `max` code units breaks the rule ('too_long', 'unsafe_text'), or
 * undefined; for callers that skip a record rather than refuse the request (package records).
 */
export function singleLineTextProblem(value: string, max: number): 'too_long' | 'unsafe_text' | undefined {
  const problem = textProblem(value, { max });
  return problem === undefined || problem === 'too_long' ? problem : 'unsafe_text';
}

/** True when single-line text holds a character the rule refuses (control, bidirectional, …): text to escape before a terminal shows it. */
export function hasUnsafeSingleLineText(text: string): boolean {
  return UNSAFE_SINGLE_LINE.test(text);
}

const codePoint = (character: string): string => `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Returns the value when it satisfies the rule. Otherwise throws ERR_INVALID_ARGUMENT with the
 * message "<label> <problem>" (label names the field, e.g. `RegisterRequest.hostname`) and the
 * given details (at least the field name), so the agent learns which field was refused.
 */
export function checkAgentText(value: unknown, label: string, rule: TextRule, details: ErrorDetails): string {
  const refuse = (problem: string): CtOpsError => new CtOpsError('ERR_INVALID_ARGUMENT', `${label} ${problem}`, details);
  if (typeof value !== 'string') throw refuse('must be a string');
  if (rule.required && value.length === 0) throw refuse('is required');
  const problem = textProblem(value, rule);
  if (problem === 'too_long') throw refuse(`is longer than ${rule.max} characters`);
  if (problem) throw refuse(`contains ${codePoint(problem.unsafe)}, a control, bidirectional formatting or unpaired surrogate character`);
  if (rule.pattern && !rule.pattern.test(value)) throw refuse('has characters that are not allowed');
  return value;
}

/** Every string inside a parsed JSON value (keys too), depth first; for checking agent JSON results. */
export function* stringsIn(value: unknown): Generator<string> {
  if (typeof value === 'string') yield value;
  else if (Array.isArray(value)) for (const item of value) yield* stringsIn(item);
  else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      yield key;
      yield* stringsIn(item);
    }
  }
}

const UNSAFE_GLOBAL = new RegExp(UNSAFE_SINGLE_LINE.source, 'gu');
const UNSAFE_MULTILINE_GLOBAL = new RegExp(UNSAFE_MULTILINE.source, 'gu');

/**
 * The text with every character the rule refuses replaced, for the agent's side of the edge: task
 * output and package fields come from other programs (a collector's error text may carry colour
 * codes, an rpm vendor a tab), and one such character must not get the whole report refused.
 * In single-line text a tab or line break becomes a space; anything else refused becomes U+FFFD.
 */
export function replaceUnsafeText(text: string, options: { readonly multiline?: boolean } = {}): string {
  return text.replace(options.multiline ? UNSAFE_MULTILINE_GLOBAL : UNSAFE_GLOBAL, (character) => (!options.multiline && /[\t\n\r]/.test(character) ? ' ' : '\uFFFD'));
}

/**
 * The text as one terminal line with every unsafe character (the single-line rule above: line
 * breaks too, so a value cannot draw a fake line) shown as a visible escape: `\x1b`, `\x9b`,
 * `\n`-style for codes below U+0100, `\u202e`-style for the rest.
 */
export function escapeForTerminal(text: string): string {
  return text.replace(UNSAFE_GLOBAL, (character) => {
    const code = character.codePointAt(0)!;
    if (code === 0x0a) return '\\n';
    if (code === 0x09) return '\\t';
    if (code === 0x0d) return '\\r';
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * JSON text from JSON.stringify, still valid JSON with the same value, but with the characters
 * JSON.stringify leaves raw (DEL, C1, bidirectional formatting, U+2028/U+2029) written as
 * \uXXXX escapes, so `--json` output is safe on a terminal too. Outside strings JSON text is
 * ASCII, so every match is inside a string, where \uXXXX means the same character.
 */
export function escapeUnsafeJson(json: string): string {
  return json.replace(UNSAFE_IN_JSON, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A CLI's `--json` output: indented JSON of the value, terminal-safe (escapeUnsafeJson), and a newline. */
export function terminalJson(value: unknown): string {
  return `${escapeUnsafeJson(JSON.stringify(value, null, 2))}\n`;
}
