import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { escapeForTerminal, terminalJson } from '../../common/agent-text.ts';
import { decodeConfigText } from '../../common/config-file.ts';
import { CtOpsError } from '../../common/errors.ts';
import { parsePublicKeyFile, type PublicKey } from '../../common/minisign.ts';
import { verifyBundle, type VerifyReport } from '../verify/verify.ts';
import { terminalProgress } from './progress.ts';

interface VerifyOptions {
  pubkey: string;
  json: boolean;
}

const EXIT_CODES = `
Give the bundle zip, or the folder it was extracted to (the folder the operator carries
to the host; its name is the bundle's top folder). Checks, without the appliance:
  - zip structure: one reading only. Refused (ERR_BUNDLE_ZIP_AMBIGUOUS, with a reason)
    when bytes precede the first entry, entries leave gaps or overlap, a local header
    disagrees with its central record, there is a second central directory or end
    record, or bytes after it, Zip64, encryption, a method other than stored/deflate,
    an extra field that renames or resizes, a name not in plain ASCII/UTF-8 or with
    NUL, names equal up to case or Unicode normalisation, or compressed data that does
    not end exactly at its size; refused (ERR_BUNDLE_ZIP_TOO_LARGE) from the end record
    when it declares more than 1000 entries. Directory entries and data descriptors,
    as zip -r writes them, are fine.
  - layout: one top folder and no unsafe entries (absolute paths, "..", backslashes,
    symlinks, FIFOs or devices, modes other than 0644/0755);
  - SHA256SUMS.minisig is a valid signature of SHA256SUMS by the bundle public key;
  - every file matches SHA256SUMS, none missing, none extra; manifest.json agrees with
    SHA256SUMS (sizes and modes too).

Exit codes:
  0   verified: safe to install
  64  usage: a missing argument, or --pubkey is not a minisign public key
  65  the zip is ambiguous (ERR_BUNDLE_ZIP_AMBIGUOUS), too large (ERR_BUNDLE_ZIP_TOO_LARGE),
      unsafe or malformed (ERR_BUNDLE_ENTRY_INVALID), or its content differs from the
      signed SHA256SUMS (ERR_BUNDLE_TAMPERED)
  66  the bundle or the public key file does not exist
  77  the signature is missing, invalid, or made by another key (ERR_BUNDLE_SIGNATURE_INVALID)
`;

function readPublicKey(path: string): PublicKey {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `cannot read the bundle public key ${path} (give it with --pubkey)`, { path }, { cause });
  }
  const text = decodeConfigText(bytes, path, 'ERR_USAGE');
  try {
    return parsePublicKeyFile(text);
  } catch (cause) {
    throw new CtOpsError('ERR_USAGE', `--pubkey: ${path} is not a minisign public key`, { path }, { cause });
  }
}

function printReport(report: VerifyReport, json: boolean): void {
  if (json) {
    const { exitCode, keyId, topFolder, trustedComment, bundleId, agentVersion, ...rest } = report;
    const view = {
      ...rest,
      exit_code: exitCode,
      key_id: keyId,
      ...(topFolder !== undefined ? { top_folder: topFolder } : {}),
      ...(trustedComment !== undefined ? { trusted_comment: trustedComment } : {}),
      ...(bundleId !== undefined ? { bundle_id: bundleId } : {}),
      ...(agentVersion !== undefined ? { agent_version: agentVersion } : {}),
    };
    process.stdout.write(terminalJson(view));
    return;
  }
  // Problems name entries of the zip under test: hostile text, printed escaped like every report line.
  for (const problem of report.problems) process.stdout.write(`  ${problem.code}${problem.reason !== undefined ? ` (${problem.reason})` : ''}: ${escapeForTerminal(problem.message)}\n`);
  if (report.ok) {
    process.stdout.write(
      `${escapeForTerminal(`OK: ${report.path}: signed by bundle key ${report.keyId}; all ${report.files} files match SHA256SUMS (bundle ${report.bundleId}, ${report.os}-${report.arch}, agent ${report.agentVersion})`)}\n`,
    );
  } else {
    const kinds = [...new Set(report.problems.map((problem) => problem.code))].join(', ');
    process.stdout.write(`FAILED: ${escapeForTerminal(report.path)}: ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} (${kinds}); do not install this bundle\n`);
  }
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description('verify a bundle zip, or its extracted folder, on a transfer station (no appliance needed)')
    .argument('<bundle>', 'the bundle zip, or the folder it was extracted to')
    .option('--pubkey <file>', "the appliance's bundle public key (minisign format)", './bundle.pub')
    .option('--json', 'print the result as JSON', false)
    .addHelpText('after', EXIT_CODES)
    .action(async (bundlePath: string, options: VerifyOptions) => {
      try {
        const key = readPublicKey(options.pubkey);
        terminalProgress('ct-ops-bundle')(`checking ${bundlePath}`);
        const report = await verifyBundle(bundlePath, key);
        printReport(report, options.json);
        process.exitCode = report.exitCode;
      } catch (error) {
        if (options.json && error instanceof CtOpsError) {
          process.stdout.write(terminalJson({ ok: false, path: bundlePath, exit_code: error.exitCode, problems: [{ code: error.code, message: error.message }] }));
        }
        throw error;
      }
    });
}
