/**
 * Verifies a bundle on a transfer station — the zip, or the folder it was extracted
 * to — with only the bundle public key (no appliance). Order: the zip's structure
 * (bundler/zip/structure.ts: refused unread when two unzip tools could see different
 * files), then the layout, then the signature over SHA256SUMS, then every file
 * against SHA256SUMS, then manifest.json against both. Content is only judged once
 * the signature holds: an unsigned list proves nothing.
 */
import { stat } from 'node:fs/promises';
import { CtOpsError } from '../../common/errors.ts';
import { keyIdHex, verifySignature, type PublicKey } from '../../common/minisign.ts';
import { MANIFEST_FILE, SIGNATURE_FILE, SUMS_FILE, modeText, type Manifest } from '../build/manifest.ts';
import { parseSha256Sums } from '../lib/sha256sums.ts';
import { openZip } from '../zip/read.ts';
import { openFolder } from './folder.ts';
import { checkLayout, type Layout } from './layout.ts';
import { exitCodeOf, problemOf, type VerifyProblem } from './problems.ts';
import type { BundleEntry, BundleSource } from './source.ts';

const MAX_METADATA_BYTES = 1024 * 1024;
const UNSIGNED = new Set([SUMS_FILE, SIGNATURE_FILE]);

export interface VerifyReport {
  readonly ok: boolean;
  readonly path: string;
  readonly exitCode: number;
  readonly problems: readonly VerifyProblem[];
  readonly keyId: string;
  readonly topFolder?: string;
  readonly trustedComment?: string;
  readonly bundleId?: string;
  readonly os?: string;
  readonly arch?: string;
  readonly agentVersion?: string;
  readonly files?: number;
}

async function checkSignature<E extends BundleEntry>(reader: BundleSource<E>, layout: Layout<E>, key: PublicKey, problems: VerifyProblem[]): Promise<{ sums: string; trustedComment: string } | undefined> {
  const bad = (message: string, path?: string): undefined => {
    problems.push({ code: 'ERR_BUNDLE_SIGNATURE_INVALID', message, ...(path !== undefined ? { path } : {}) });
    return undefined;
  };
  const sumsEntry = layout.files.get(SUMS_FILE);
  const signatureEntry = layout.files.get(SIGNATURE_FILE);
  if (!sumsEntry) return bad(`${SUMS_FILE} is missing`);
  if (!signatureEntry) return bad(`${SIGNATURE_FILE} is missing`);
  let sums: Buffer;
  let signature: Buffer;
  try {
    sums = await reader.read(sumsEntry, MAX_METADATA_BYTES);
    signature = await reader.read(signatureEntry, MAX_METADATA_BYTES);
  } catch (error) {
    return bad(`cannot read ${SUMS_FILE} or its signature: ${(error as Error).message}`);
  }
  try {
    const trustedComment = verifySignature(signature.toString('utf8'), { data: sums }, key);
    return { sums: sums.toString('utf8'), trustedComment };
  } catch (error) {
    return bad(`${SIGNATURE_FILE}: ${(error as Error).message}`, signatureEntry.name);
  }
}

interface ContentResult {
  /** Every digest SHA256SUMS vouches for. */
  readonly signed: ReadonlyMap<string, string>;
  /** The files present whose content matches. */
  readonly verified: ReadonlySet<string>;
}

async function checkContent<E extends BundleEntry>(reader: BundleSource<E>, layout: Layout<E>, sumsText: string, problems: VerifyProblem[]): Promise<ContentResult> {
  const tampered = (message: string, path?: string): void => {
    problems.push({ code: 'ERR_BUNDLE_TAMPERED', message, ...(path !== undefined ? { path } : {}) });
  };
  const { digests, malformed } = parseSha256Sums(sumsText);
  for (const line of malformed) tampered(`${SUMS_FILE} has a malformed or repeated line: ${JSON.stringify(line.slice(0, 120))}`);
  const verified = new Set<string>();
  for (const [name, expected] of [...digests].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (UNSIGNED.has(name)) {
      tampered(`${SUMS_FILE} lists ${name}, which it cannot vouch for`);
      continue;
    }
    const info = layout.files.get(name);
    if (!info) {
      tampered(`${name} is listed in ${SUMS_FILE} but missing from the bundle`, `${layout.top}/${name}`);
      continue;
    }
    try {
      const { sha256 } = await reader.sha256(info);
      if (sha256 !== expected) tampered(`${name} does not match ${SUMS_FILE} (sha256 ${sha256}, signed ${expected})`, info.name);
      else verified.add(name);
    } catch (error) {
      const problem = problemOf(error);
      if (problem) problems.push(problem);
      else tampered(`${name} cannot be read: ${(error as Error).message}`, info.name);
    }
  }
  for (const [name, info] of layout.files) {
    if (!digests.has(name) && !UNSIGNED.has(name)) tampered(`${name} is in the bundle but not in ${SUMS_FILE}`, info.name);
  }
  for (const path of layout.nested) tampered(`${path} is in the bundle but not in ${SUMS_FILE}`, path);
  return { signed: digests, verified };
}

function parseManifest(text: string): Manifest | undefined {
  try {
    const value = JSON.parse(text) as Manifest;
    return typeof value === 'object' && value !== null && Array.isArray(value.files) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Checks manifest.json against SHA256SUMS; files whose content failed are reported once, by checkContent. */
async function checkManifest<E extends BundleEntry>(reader: BundleSource<E>, layout: Layout<E>, content: ContentResult, problems: VerifyProblem[]): Promise<Manifest | undefined> {
  const tampered = (message: string): void => {
    problems.push({ code: 'ERR_BUNDLE_TAMPERED', message, path: `${layout.top}/${MANIFEST_FILE}` });
  };
  const { signed, verified } = content;
  const entry = layout.files.get(MANIFEST_FILE);
  if (!signed.has(MANIFEST_FILE)) tampered(`${MANIFEST_FILE} is not in ${SUMS_FILE}`);
  if (!entry || !verified.has(MANIFEST_FILE)) return undefined;
  const manifest = parseManifest((await reader.read(entry, MAX_METADATA_BYTES)).toString('utf8'));
  if (!manifest) {
    tampered(`${MANIFEST_FILE} is not a bundle manifest`);
    return undefined;
  }
  if (manifest.format !== 1) tampered(`${MANIFEST_FILE} has format ${String(manifest.format)}; this verifier knows format 1`);
  const expectedTop = `ct-ops-agent-${manifest.agent_version}-${manifest.os}-${manifest.arch}`;
  if (layout.top !== expectedTop) tampered(`the top folder is ${layout.top}, the manifest describes ${expectedTop}`);
  const listed = new Set<string>();
  for (const file of manifest.files) {
    listed.add(file.path);
    const digest = signed.get(file.path);
    const info = layout.files.get(file.path);
    if (digest === undefined || file.path === MANIFEST_FILE) tampered(`${MANIFEST_FILE} lists ${file.path}, which ${SUMS_FILE} does not vouch for`);
    else if (file.sha256 !== digest) tampered(`${MANIFEST_FILE} gives ${file.path} sha256 ${file.sha256}, ${SUMS_FILE} ${digest}`);
    else if (!info || !verified.has(file.path)) continue;
    else if (file.size !== info.size) tampered(`${MANIFEST_FILE} gives ${file.path} ${file.size} bytes, the zip ${info.size}`);
    else if (info.permissions === undefined || file.mode !== modeText(info.permissions)) tampered(`${MANIFEST_FILE} gives ${file.path} mode ${file.mode}, the zip ${info.permissions?.toString(8)}`);
  }
  for (const name of signed.keys()) {
    if (name !== MANIFEST_FILE && !listed.has(name)) tampered(`${name} is in ${SUMS_FILE} but not in ${MANIFEST_FILE}`);
  }
  const targetEntry = layout.files.get('TARGET');
  if (targetEntry && verified.has('TARGET')) {
    const target = (await reader.read(targetEntry, 64)).toString('utf8').trim();
    if (target !== `${manifest.os}-${manifest.arch}`) tampered(`TARGET says ${JSON.stringify(target)}, the manifest ${manifest.os}-${manifest.arch}`);
  }
  return manifest;
}

async function openSource(path: string): Promise<BundleSource<BundleEntry>> {
  try {
    const stats = await stat(path);
    if (stats.isDirectory()) return await openFolder(path);
    // A FIFO or device would block the open or never end; only a regular file can be a zip.
    if (!stats.isFile()) throw new CtOpsError('ERR_BUNDLE_ENTRY_INVALID', `${path} is neither a zip file nor a folder`, { path, reason: 'not-a-zip' });
    return await openZip(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CtOpsError('ERR_BUNDLE_NOT_FOUND', `no bundle at ${path}`, { path }, { cause: error });
    throw error;
  }
}

/** Verifies the bundle zip or extracted bundle folder at `path`; throws ERR_BUNDLE_NOT_FOUND when there is none. */
export async function verifyBundle(path: string, key: PublicKey): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  const keyId = keyIdHex(key.keyId);
  let reader: BundleSource<BundleEntry>;
  try {
    reader = await openSource(path);
  } catch (error) {
    const problem = problemOf(error);
    if (!problem) throw error;
    problems.push(problem);
    return { ok: false, path, exitCode: exitCodeOf(problems), problems, keyId };
  }
  try {
    const layout = checkLayout(reader.entries, problems);
    if (layout.top === undefined) return { ok: false, path, exitCode: exitCodeOf(problems), problems, keyId };
    const signed = await checkSignature(reader, layout, key, problems);
    if (!signed) return { ok: false, path, exitCode: exitCodeOf(problems), problems, keyId, topFolder: layout.top };
    const content = await checkContent(reader, layout, signed.sums, problems);
    const manifest = await checkManifest(reader, layout, content, problems);
    return {
      ok: problems.length === 0,
      path,
      exitCode: exitCodeOf(problems),
      problems,
      keyId,
      topFolder: layout.top,
      trustedComment: signed.trustedComment,
      ...(manifest ? { bundleId: manifest.bundle_id, os: manifest.os, arch: manifest.arch, agentVersion: manifest.agent_version } : {}),
      files: content.verified.size,
    };
  } finally {
    await reader.close();
  }
}
