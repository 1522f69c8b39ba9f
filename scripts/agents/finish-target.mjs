// Turns one verified base binary into one agent executable: strip (Linux), inject
// the SEA blob with postject, then make the file acceptable to its platform's loader
// (an ad-hoc code signature for darwin, no stale Authenticode signature for Windows).
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { BuildAgentsError } from './errors.mjs';
import { addCodeSignatureSlot, parseMachO } from './macho.mjs';
import { MachOSignatureError, verifyMachOSignature } from './macho-signature-check.mjs';
import { stripAuthenticode } from './pe.mjs';
import { runStep } from './tools.mjs';

function postjectCli() {
  try {
    return createRequire(import.meta.url).resolve('postject/dist/cli.js');
  } catch (error) {
    throw new BuildAgentsError('ERR_TOOL_MISSING', 'postject is not installed (it is a devDependency: run `npm ci`)', { cause: error });
  }
}
// The fuse compiled into Node's SEA support: postject flips it to say "blob present".
export const SEA_SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
export const SEA_RESOURCE = 'NODE_SEA_BLOB';
export const SEA_MACHO_SEGMENT = 'NODE_SEA';

async function inject(target, binary, blob) {
  const args = [postjectCli(), binary, SEA_RESOURCE, blob, '--sentinel-fuse', SEA_SENTINEL_FUSE];
  if (target.format === 'macho') args.push('--macho-segment-name', SEA_MACHO_SEGMENT);
  // postject warns that the Windows signature "seems corrupted": it is removed below.
  await runStep(`postject (${target.id})`, process.execPath, args, { env: { ...process.env, FORCE_COLOR: '0' } });
}

/**
 * Gives a darwin executable a fresh ad-hoc signature. LIEF (inside postject) drops
 * the Node.js project's signature, which no longer matched anyway; an empty
 * LC_CODE_SIGNATURE is added and llvm-objcopy (LLVM ≥ 13) fills it with an ad-hoc
 * signature (SHA-256 per 4 KiB page, flags adhoc|linker-signed, as ld64 and lld
 * sign arm64 executables). The identifier is the output file's name. Checked here
 * page by page, since Apple silicon kills a process whose pages do not match.
 */
async function signAdHoc(target, binary, objcopy, outputPath) {
  const injected = readFileSync(binary);
  if (!parseMachO(injected).codeSignature) writeFileSync(binary, addCodeSignatureSlot(injected));
  await runStep(`llvm-objcopy ad-hoc signing (${target.id})`, objcopy, [binary, outputPath]);
  try {
    verifyMachOSignature(readFileSync(outputPath));
  } catch (error) {
    if (error instanceof MachOSignatureError) throw new BuildAgentsError('ERR_SIGNATURE_CHECK_FAILED', `${target.id}: ${error.message}`, { cause: error });
    throw error;
  }
}

/**
 * Builds target's executable at join(outputDir, target.fileName) from its extracted
 * base binary (modified in place) and the SEA blob.
 */
export async function finishTarget({ target, baseBinary, blob, tools, outputDir, step }) {
  const outputPath = join(outputDir, target.fileName);
  if (target.format === 'elf') {
    step('strip');
    await runStep(`llvm-strip (${target.id})`, tools.strip, [baseBinary]);
    if (target.nodePlatform === process.platform && target.arch === process.arch) {
      // The one stripped binary this machine can run: prove strip left it working.
      const version = execFileSync(baseBinary, ['--version'], { encoding: 'utf8' }).trim();
      if (!/^v\d+\./.test(version)) throw new BuildAgentsError('ERR_TOOL_FAILED', `the stripped ${target.id} base binary does not run (printed ${JSON.stringify(version)})`);
    }
  }
  step('inject');
  await inject(target, baseBinary, blob);
  if (target.format === 'macho') {
    step('sign ad-hoc');
    await signAdHoc(target, baseBinary, tools.objcopy, outputPath);
    rmSync(baseBinary);
  } else if (target.format === 'pe') {
    step('strip Authenticode');
    writeFileSync(outputPath, stripAuthenticode(readFileSync(baseBinary)).buffer);
    rmSync(baseBinary);
  } else {
    renameSync(baseBinary, outputPath);
  }
  chmodSync(outputPath, 0o755);
  return outputPath;
}
