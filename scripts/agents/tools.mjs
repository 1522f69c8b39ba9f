// The external programs the build runs, found once up front so a missing one is
// reported before minutes of work rather than after.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { BuildAgentsError } from './errors.mjs';

const execFileAsync = promisify(execFile);
// llvm-objcopy writes ad-hoc Mach-O signatures since LLVM 13.
const MIN_LLVM_MAJOR = 13;
const LLVM_SUFFIXES = ['', '-20', '-19', '-18', '-17', '-16', '-15', '-14', '-13'];

function llvmMajor(command) {
  try {
    const text = execFileSync(command, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const match = /LLVM version (\d+)/.exec(text);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function findLlvm(tool) {
  for (const suffix of LLVM_SUFFIXES) {
    const major = llvmMajor(`${tool}${suffix}`);
    if (major !== undefined && major >= MIN_LLVM_MAJOR) return `${tool}${suffix}`;
  }
  throw new BuildAgentsError('ERR_TOOL_MISSING', `${tool} from LLVM ${MIN_LLVM_MAJOR} or newer is not installed (Debian: apt-get install llvm)`);
}

/** Paths of the tools the given target formats need. */
export function findTools(formats) {
  const tools = {};
  try {
    execFileSync('tar', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new BuildAgentsError('ERR_TOOL_MISSING', 'tar is not installed');
  }
  if (formats.has('elf')) tools.strip = findLlvm('llvm-strip');
  if (formats.has('macho')) tools.objcopy = findLlvm('llvm-objcopy');
  return tools;
}

/** Runs a build step; a failure becomes ERR_TOOL_FAILED carrying the tool's output. */
export async function runStep(what, command, args, options = {}) {
  try {
    return await execFileAsync(command, args, { maxBuffer: 64 * 1024 * 1024, ...options });
  } catch (error) {
    const output = `${error.stdout ?? ''}${error.stderr ?? ''}`.trim();
    throw new BuildAgentsError('ERR_TOOL_FAILED', `${what} failed: ${output.split('\n').slice(-5).join('\n') || error.message}`, { cause: error });
  }
}
