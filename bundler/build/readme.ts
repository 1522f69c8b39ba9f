/**
 * README.md of a bundle: what it is, how to verify it, how to install it, the
 * fingerprints to compare, and a warning when it carries an enrolment secret.
 * Only validated values appear (target, version, ids, address, dates, fingerprints).
 */
import { executableName, hostPaths, targetName, type Target } from '../lib/targets.ts';
import type { BundleToken } from './token.ts';

export interface ReadmeInput {
  readonly target: Target;
  readonly agentVersion: string;
  readonly baseName: string;
  readonly bundleId: string;
  readonly createdAt: string;
  /** The ingest addresses for people (IngestAddress.display): an IDNA name in both forms. */
  readonly addressesDisplay: readonly string[];
  /** Every CA in ca.crt, the current first; a second one is the next CA of a rotation in progress. */
  readonly caFingerprints: readonly string[];
  readonly bundleKeyId: string;
  readonly releaseKeyId: string;
  readonly token: BundleToken;
}

const iso = (ms: number): string => new Date(ms).toISOString();

function tokenSection(input: ReadmeInput): string[] {
  const { token } = input;
  if (token.mode === 'none') {
    return [
      '## Enrolment token',
      '',
      'This bundle holds **no enrolment token**. Give the host one before the agent starts: export',
      '`CT_OPS_ORG_TOKEN=tok_…` in the environment the installer and the service run with, or add',
      '`org_token = "tok_…"` under `[agent]` in the installed agent.toml. Create a token on the appliance',
      'with `ct-ops-appliance tokens create`. Without one the agent cannot enrol: it stops with exit code 78 (`ERR_TOKEN_REQUIRED`).',
      '',
    ];
  }
  return [
    '## ⚠ This bundle contains an enrolment secret',
    '',
    `\`agent.toml\` holds the secret of enrolment token \`${token.id}\`, which lets a host join this appliance.`,
    '**Treat the media as sensitive**: do not leave it on shared drives, and wipe it after installing.',
    '',
    `- The token expires at **${iso(token.expiresAt!)}**.`,
    token.mode === 'new'
      ? '- It is **single use**: the first host that enrols with it uses it up.'
      : '- It is an existing token: check its remaining uses with `ct-ops-appliance tokens list`.',
    `- If the media is lost, revoke it on the appliance: \`ct-ops-appliance tokens revoke ${token.id}\`.`,
    '',
  ];
}

function verifySection(input: ReadmeInput): string[] {
  const zip = `${input.baseName}.zip`;
  const common = [
    '## 1. Verify before installing',
    '',
    'Get `bundle.pub` from the appliance by a separate path (never from the same media) and check that its',
    `key id is \`${input.bundleKeyId}\`. On the transfer station:`,
    '',
    '```sh',
    `ct-ops-bundle verify ${zip} --pubkey bundle.pub`,
    '```',
    '',
    'or, after unzipping, inside this folder:',
    '',
  ];
  if (input.target.os === 'windows') {
    return [
      ...common,
      '```powershell',
      'minisign -Vm SHA256SUMS -p C:\\path\\to\\bundle.pub',
      'Get-Content SHA256SUMS | ForEach-Object {',
      "  $hash, $name = $_ -split '  ', 2",
      '  if ((Get-FileHash -Algorithm SHA256 -LiteralPath $name).Hash -ne $hash) { throw "checksum mismatch: $name" }',
      '}',
      '```',
      '',
      'Both must succeed. `Get-FileHash -Algorithm SHA256 .\\ct-ops-agent.exe` shows a single file\'s hash to compare by eye.',
      '',
    ];
  }
  const sumTool = input.target.os === 'darwin' ? 'shasum -a 256 -c SHA256SUMS' : 'sha256sum -c SHA256SUMS';
  return [...common, '```sh', 'minisign -Vm SHA256SUMS -p /path/to/bundle.pub', sumTool, '```', '', 'Both must succeed; `SHA256SUMS` lists every file in this folder.', ''];
}

function installSection(input: ReadmeInput): string[] {
  const { os } = input.target;
  const paths = hostPaths(os);
  if (os === 'windows') {
    return [
      '## 2. Install',
      '',
      'In an elevated PowerShell, from this folder (after `Expand-Archive`):',
      '',
      '```powershell',
      'powershell -NoProfile -ExecutionPolicy Bypass -File .\\install.ps1',
      '```',
      '',
      `The agent runs as the Windows service wrapped by \`ct-ops-agent-service.exe\`; its CA is \`${paths.caCertFile}\` and its data \`${paths.dataDir}\`.`,
      'Remove it with `.\\uninstall.ps1` (elevated).',
      '',
    ];
  }
  return [
    '## 2. Install',
    '',
    'As root, from this folder (after `unzip`):',
    '',
    '```sh',
    'sudo sh ./install.sh --bundle-pubkey /path/to/bundle.pub',
    '```',
    '',
    '`--bundle-pubkey` checks the signature again on the host (needs `minisign`); `--dry-run` shows every step',
    'without changing anything; `--help` lists the other options.',
    '',
    `The installer checks \`TARGET\` (\`${targetName(input.target)}\`), installs \`${executableName(os)}\`, \`agent.toml\` and \`ca.crt\``,
    `(the agent trusts \`${paths.caCertFile}\`, keeps its data in \`${paths.dataDir}\`) and starts the ${os === 'linux' ? 'systemd unit `ct-ops-agent.service`' : 'launchd daemon `com.ct-ops.agent`'}.`,
    'Remove it with `sudo sh ./uninstall.sh`.',
    '',
  ];
}

export function renderReadme(input: ReadmeInput): string {
  return [
    `# CT-Ops agent ${input.agentVersion} for ${targetName(input.target)}`,
    '',
    `Offline install bundle \`${input.bundleId}\`, created ${input.createdAt}, for the appliance at ${input.addressesDisplay.map((address) => `\`${address}\``).join(', ')}.`,
    '',
    ...tokenSection(input),
    '## Fingerprints',
    '',
    'Compare these with what the appliance prints (`appliance started` log line, admin console):',
    '',
    '| what | value |',
    '| --- | --- |',
    ...input.caFingerprints.map((fingerprint, index) => `| ${index === 0 ? 'appliance CA' : 'next appliance CA (rotation in progress)'} (\`ca.crt\`) SHA-256 | \`${fingerprint}\` |`),
    `| bundle signing key id (\`bundle.pub\`) | \`${input.bundleKeyId}\` |`,
    `| agent release key id (agent.toml \`[update]\`) | \`${input.releaseKeyId}\` |`,
    '',
    ...verifySection(input),
    ...installSection(input),
  ].join('\n');
}
