import { readFileSync } from 'node:fs';
import { CtOpsError } from '../../common/errors.ts';

/** The variable a script sets instead of a passphrase file (never a flag: argv is visible to every local user). */
export const PASSPHRASE_ENV = 'CT_OPS_BACKUP_PASSPHRASE';
/** A backup holds the CA and JWT keys; scrypt slows guessing, a short passphrase still falls (decision 68). */
export const MIN_BACKUP_PASSPHRASE_CHARS = 12;

export interface PassphraseSources {
  /** --passphrase-file: its first line is the passphrase. */
  readonly file?: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** 'backup' asks twice on a terminal and enforces the minimum length; 'restore' asks once. */
  readonly purpose: 'backup' | 'restore';
}

/**
 * The passphrase from, in order: --passphrase-file, CT_OPS_BACKUP_PASSPHRASE, a hidden prompt when
 * stdin and stderr are a terminal. Throws ERR_BACKUP_PASSPHRASE_REQUIRED when none is given, it is
 * empty, a backup one is shorter than MIN_BACKUP_PASSPHRASE_CHARS or the two typed ones differ;
 * ERR_CONFIG_UNREADABLE when the file cannot be read. The passphrase is never printed.
 */
export async function readPassphrase(sources: PassphraseSources): Promise<string> {
  const passphrase = await sourcedPassphrase(sources);
  if (passphrase === '') throw new CtOpsError('ERR_BACKUP_PASSPHRASE_REQUIRED', 'the passphrase is empty', {});
  if (sources.purpose === 'backup' && [...passphrase].length < MIN_BACKUP_PASSPHRASE_CHARS) {
    throw new CtOpsError('ERR_BACKUP_PASSPHRASE_REQUIRED', `a backup passphrase needs at least ${MIN_BACKUP_PASSPHRASE_CHARS} characters (it protects the CA and JWT signing keys)`, {});
  }
  return passphrase;
}

async function sourcedPassphrase(sources: PassphraseSources): Promise<string> {
  if (sources.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(sources.file, 'utf8');
    } catch (cause) {
      throw new CtOpsError('ERR_CONFIG_UNREADABLE', `cannot read the passphrase file ${sources.file}`, { path: sources.file }, { cause });
    }
    return text.split(/\r?\n/, 1)[0]!;
  }
  const fromEnv = sources.env[PASSPHRASE_ENV];
  if (fromEnv !== undefined) return fromEnv;
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new CtOpsError('ERR_BACKUP_PASSPHRASE_REQUIRED', `give the passphrase with --passphrase-file or ${PASSPHRASE_ENV} (no terminal to ask on)`, {});
  }
  const first = await promptHidden('Backup passphrase: ');
  if (sources.purpose === 'restore') return first;
  if ((await promptHidden('Same passphrase again: ')) !== first) throw new CtOpsError('ERR_BACKUP_PASSPHRASE_REQUIRED', 'the two passphrases differ', {});
  return first;
}

/** Reads one line from the terminal without echoing it (raw mode; backspace edits, Ctrl-C aborts). */
function promptHidden(question: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(question);
  input.setRawMode(true);
  input.resume();
  input.setEncoding('utf8');
  let typed = '';
  return new Promise((resolve, reject) => {
    const done = (error?: CtOpsError): void => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(typed);
    };
    const onData = (chunk: string): void => {
      for (const character of chunk) {
        if (character === '\r' || character === '\n') return done();
        if (character === '\u0003') return done(new CtOpsError('ERR_BACKUP_PASSPHRASE_REQUIRED', 'interrupted at the passphrase prompt', {}));
        if (character === '\u007f' || character === '\b') typed = [...typed].slice(0, -1).join('');
        else typed += character;
      }
    };
    input.on('data', onData);
  });
}
