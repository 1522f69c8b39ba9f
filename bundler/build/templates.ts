/**
 * The install scripts and service definitions a target's bundle carries, copied
 * byte for byte from installers/, systemd/, launchd/ and windows/ (they read
 * agent.toml and TARGET; nothing is pasted into them).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import type { TargetOs } from '../lib/targets.ts';
import { bundleFile, type BundleFile, type FileMode } from '../lib/bundle-file.ts';
import { byName } from '../lib/sha256sums.ts';

interface NamedTemplate {
  readonly name: string;
  /** Paths relative to the templates directory, first existing wins. */
  readonly candidates: readonly string[];
  readonly mode: FileMode;
}

interface TemplateSet {
  readonly named: readonly NamedTemplate[];
  /** Extra files of a directory matching a pattern (helper units, helper plists). */
  readonly extras?: { readonly dir: string; readonly pattern: RegExp };
}

const script = (name: string, os: TargetOs, mode: FileMode): NamedTemplate => ({
  name,
  candidates: [join('installers', os, name), join('installers', name)],
  mode,
});

const unit = (name: string, dir: string): NamedTemplate => ({ name, candidates: [join(dir, name)], mode: 0o644 });

/** Linux and macOS share the POSIX scripts and differ in their service manager's files. */
const posix = (os: TargetOs, serviceFile: string, serviceDir: string, helperPattern: RegExp): TemplateSet => ({
  named: [script('install.sh', os, 0o755), script('uninstall.sh', os, 0o755), script('ct-ops-agent-helper.sh', os, 0o755), unit(serviceFile, serviceDir)],
  extras: { dir: serviceDir, pattern: helperPattern },
});

const TEMPLATES: Record<TargetOs, TemplateSet> = {
  linux: posix('linux', 'ct-ops-agent.service', 'systemd', /^ct-ops-agent-[A-Za-z0-9_.@-]+\.(?:service|path|timer|socket)$/),
  darwin: posix('darwin', 'com.ct-ops.agent.plist', 'launchd', /^com\.ct-ops\.agent[-.][A-Za-z0-9_.-]+\.plist$/),
  windows: {
    named: [
      script('install.ps1', 'windows', 0o644),
      script('uninstall.ps1', 'windows', 0o644),
      unit('ct-ops-agent-service.xml', 'windows'),
      unit('ct-ops-agent-service.exe.config', 'windows'),
    ],
  },
};

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function readTemplate(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `cannot read the install template ${path}`, { path }, { cause });
  }
}

/** Reads every template the target needs; a missing one is ERR_BUNDLE_INPUT_MISSING. */
export function loadTemplates(templatesDir: string, os: TargetOs): BundleFile[] {
  const set = TEMPLATES[os];
  const files: BundleFile[] = set.named.map((template) => {
    const found = template.candidates.map((candidate) => join(templatesDir, candidate)).find(isFile);
    if (found === undefined) {
      throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `the ${os} bundle needs ${template.name}; looked for ${template.candidates.join(', ')} under ${templatesDir}`, {
        path: join(templatesDir, template.candidates[0]!),
      });
    }
    return bundleFile(template.name, readTemplate(found), template.mode);
  });
  if (set.extras) {
    const dir = join(templatesDir, set.extras.dir);
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      names = [];
    }
    for (const name of names.filter((candidate) => set.extras!.pattern.test(candidate)).sort(byName)) {
      const path = join(dir, name);
      if (isFile(path)) files.push(bundleFile(name, readTemplate(path), 0o644));
    }
  }
  return files;
}
