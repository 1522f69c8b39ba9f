import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { escapeForTerminal, terminalJson } from '../../common/agent-text.ts';
import { CtOpsError } from '../../common/errors.ts';
import { parsePublicKeyFile, type PublicKey } from '../../common/minisign.ts';
import { verifyBundle, type VerifyReport } from '../verify/verify.ts';
import { terminalProgress } from './progress.ts';

interface VerifyOptions {
  pubkey: string;
  json: boolean;
}

const EXIT_CODES = `
Checks, without the appliance: one top folder and no unsafe entries (absolute paths, "..",
backslashes, symlinks, duplicates, modes other than 0644/0755); SHA256SUMS.minisig is a
valid signature of SHA256SUMS by the bundle public key; every file matches SHA256SUMS,
none missing, none extra; manifest.json agrees with SHA256SUMS.

Exit codes:
  0   verified: safe to install
  64  usage: a missing argument, or --pubkey is not a minisign public key
  65  the zip is unsafe or malformed (ERR_BUNDLE_ENTRY_INVALID), or its content differs
      from the signed SHA256SUMS (ERR_BUNDLE_TAMPERED)
  66  the zip or the public key file does not exist
  77  the signature is missing, invalid, or made by another key (ERR_BUNDLE_SIGNATURE_INVALID)
`;

function readPublicKey(path: string): PublicKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `cannot read the bundle public key ${path} (give it with --pubkey)`, { path }, { cause });
  }
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
  for (const problem of report.problems) process.stdout.write(`  ${problem.code}: ${escapeForTerminal(problem.message)}\n`);
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
    .description('verify a bundle zip on a transfer station (no appliance needed)')
    .argument('<bundle.zip>', 'the bundle to check')
    .option('--pubkey <file>', "the appliance's bundle public key (minisign format)", './bundle.pub')
    .option('--json', 'print the result as JSON', false)
    .addHelpText('after', EXIT_CODES)
    .action(async (zipPath: string, options: VerifyOptions) => {
      try {
        const key = readPublicKey(options.pubkey);
        terminalProgress('ct-ops-bundle')(`checking ${zipPath}`);
        const report = await verifyBundle(zipPath, key);
        printReport(report, options.json);
        process.exitCode = report.exitCode;
      } catch (error) {
        if (options.json && error instanceof CtOpsError) {
          process.stdout.write(terminalJson({ ok: false, path: zipPath, exit_code: error.exitCode, problems: [{ code: error.code, message: error.message }] }));
        }
        throw error;
      }
    });
}
