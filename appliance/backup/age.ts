import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Decrypter, Encrypter } from 'age-encryption';
import { CtOpsError } from '../../common/errors.ts';

/**
 * What age-encryption throws when no passphrase (scrypt stanza) opens the file key. The library has no
 * error class or code for it, so its message is the one signal; it is matched here only, and
 * appliance-backup.test.ts ("a wrong passphrase, …") fails against an installed version that words it
 * otherwise (the refusal would then be ERR_BACKUP_DAMAGED, exit 65, not 77).
 */
const NO_IDENTITY_MATCHED = "no identity matched any of the file's recipients";

/**
 * Encrypts `plain` to one passphrase in the age v1 format (scrypt recipient, age-encryption's
 * work factor 2^18), so the standard `age -d` decrypts the result. Returns the ciphertext as a stream.
 */
export async function encryptWithPassphrase(plain: Readable, passphrase: string): Promise<Readable> {
  const encrypter = new Encrypter();
  encrypter.setPassphrase(passphrase);
  const cipher = await encrypter.encrypt(Readable.toWeb(plain) as ReadableStream<Uint8Array>);
  return Readable.fromWeb(cipher as unknown as WebReadableStream<Uint8Array>);
}

/**
 * Decrypts an age file encrypted to a passphrase. The header is checked before this resolves:
 * a passphrase that opens no stanza throws ERR_BACKUP_PASSPHRASE_WRONG, a malformed header
 * ERR_BACKUP_DAMAGED. The returned stream authenticates each 64 KiB chunk as it goes and errors
 * (map it with backupReadError) on an altered or truncated body, so a reader must not trust what it
 * got until the stream has ended.
 */
export async function decryptWithPassphrase(cipher: Readable, passphrase: string): Promise<Readable> {
  const decrypter = new Decrypter();
  decrypter.addPassphrase(passphrase);
  try {
    const plain = await decrypter.decrypt(Readable.toWeb(cipher) as ReadableStream<Uint8Array>);
    return Readable.fromWeb(plain as unknown as WebReadableStream<Uint8Array>);
  } catch (error) {
    if ((error as Error).message === NO_IDENTITY_MATCHED) {
      throw new CtOpsError('ERR_BACKUP_PASSPHRASE_WRONG', 'the passphrase does not decrypt this backup', {}, { cause: error });
    }
    throw backupReadError(error);
  }
}

/** A failure while reading a backup's bytes (age, gzip, tar) as the catalogue error; our own errors pass through. */
export function backupReadError(error: unknown): CtOpsError {
  if (error instanceof CtOpsError) return error;
  return new CtOpsError('ERR_BACKUP_DAMAGED', `the backup is truncated or altered: ${(error as Error).message}`, {}, { cause: error });
}
