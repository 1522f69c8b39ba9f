// SHA256SUMS (sha256sum's format, sorted by name), its minisign signature and the
// public key, next to the executables, so a transfer station checks a download with
//   sha256sum -c SHA256SUMS && minisign -Vm SHA256SUMS -p release.pub
import { createHash } from 'node:crypto';
import { createReadStream, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { blake2b512File, keyIdHex, publicKeyFile, signDigest } from '../../common/minisign.ts';

async function sha256File(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

/** Writes SHA256SUMS, SHA256SUMS.minisig and release.pub into dir for the given files. */
export async function writeReleaseFiles({ dir, files, key, version, keyLabel, date = new Date() }) {
  const names = files.map((file) => basename(file)).sort();
  const lines = [];
  for (const name of names) lines.push(`${await sha256File(join(dir, name))}  ${name}\n`);
  const sums = join(dir, 'SHA256SUMS');
  writeFileSync(sums, lines.join(''));
  const trustedComment = `ct-ops-agent ${version} executables, signed ${date.toISOString()} by ${keyLabel} key ${keyIdHex(key.keyId)}`;
  writeFileSync(`${sums}.minisig`, signDigest(await blake2b512File(sums), key, trustedComment, `CT-Ops agent ${version} SHA256SUMS signature`));
  writeFileSync(join(dir, 'release.pub'), publicKeyFile(key, `CT-Ops ${keyLabel} release key ${keyIdHex(key.keyId)}`));
  return { sums, trustedComment };
}
