/**
 * Quotes untrusted text (a zip entry name, a file name) for a message: JSON string
 * syntax with everything outside printable ASCII escaped as \uXXXX, so C1 controls,
 * bidi overrides and look-alike letters cannot act on, or hide in, the reader's
 * terminal (JSON.stringify alone leaves all but C0 as they are).
 */
export function quoted(text: string): string {
  return asciiJson(JSON.stringify(text));
}

/** JSON text with every non-ASCII character as a \uXXXX escape: still the same JSON value. */
function asciiJson(json: string): string {
  return json.replace(/[\u007f-\uffff]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
