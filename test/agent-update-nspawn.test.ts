/**
 * Agent self-update end to end under a real systemd (PID 1 of a systemd-nspawn container on a Debian
 * root), with the real compiled executables: the agent installed from a bundle (v1, this checkout's
 * version) is offered v2 by a rollout, downloads and verifies it, stages it for the root helper,
 * which verifies it again, swaps, restarts the unit and waits for the new agent's first heartbeat
 * stream; v2 reports healthy and keeps v1 for a rollback. A v3 that exits at start, and a v4 that
 * starts but never opens a stream, are rolled back by the helper (its own unit, not the agent's),
 * and the restored agent reports the rollback; the rollout halts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { seedFromPem } from '../common/ed25519-pem.ts';
import { signingKeyFromSeed } from '../common/minisign.ts';
import { writeReleaseFiles } from '../scripts/agents/release-files.mjs';
import { TestAppliance } from './helpers/appliance.ts';
import type { TestRoot } from './helpers/chroot.ts';
import { BootedSystem, nspawnUnavailable, rootWithAgentBundle } from './helpers/nspawn.ts';
import { linuxX64Executable, linuxX64ReleaseOf, REPO_ROOT } from './helpers/processes.ts';
import type { HostStatus } from './helpers/rollout-status.ts';
import { waitFor } from './helpers/wait.ts';

const UNIT = 'ct-ops-agent.service';
const HELPER_UNIT = 'ct-ops-agent-helper.service';
const V2 = '0.1.1';


interface RolloutStatus {
  rollout: { version: string; state: string; halted_reason: string | null };
  hosts: HostStatus[];
}

describe('agent self-update under a booted systemd: v1 → v2, and rollbacks', { skip: nspawnUnavailable(), timeout: 15 * 60_000 }, () => {
  let appliance: TestAppliance;
  let root: TestRoot;
  let system: BootedSystem;
  let hostId: string;
  let v1: Buffer;
  let v2: Buffer;
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-update-nspawn-'));

  before(async () => {
    v1 = readFileSync(await linuxX64Executable());
    v2 = readFileSync(join(await linuxX64ReleaseOf(V2), 'ct-ops-agent-linux-x64'));
    appliance = await TestAppliance.start();
    root = await rootWithAgentBundle(appliance.dataDir, appliance.grpcPort, scratch);
    // The root helper verifies a release itself with openssl or minisign (the Debian root has neither;
    // without one it refuses every update: release-signature-invalid-no-verifier).
    root.addHostTool('/usr/bin/openssl');
    // The helper's watch, shortened: the new agent must stream within 60 s and then keep its process 5 s.
    mkdirSync(root.at(`etc/systemd/system/${HELPER_UNIT}.d`), { recursive: true });
    writeFileSync(root.at(`etc/systemd/system/${HELPER_UNIT}.d/test.conf`), '[Service]\nEnvironment=CT_OPS_UPDATE_SETTLE_SECS=5 CT_OPS_UPDATE_STREAM_WITHIN_SECS=60\n');
    system = await BootedSystem.boot(root);
    const [top] = readdirSync(root.at('bundle'));
    const installed = await system.exec([`/bundle/${top}/install.sh`]);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr + await system.journal());
    const pending = await withJournal(waitFor('the agent to enrol', async () => (await appliance.hosts()).find((entry) => entry.status === 'pending'), 60_000, 250));
    hostId = pending.id;
    assert.equal((await appliance.cli('hosts', 'approve', hostId)).code, 0);
    await withJournal(waitFor('the host online', async () => (await appliance.host(hostId)).status === 'online' || undefined, 60_000, 250));
  });
  after(async () => {
    await system?.dispose();
    await appliance?.dispose();
    root?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** The wait's result; when it fails, its error carries the journal of the agent and the helper. */
  async function withJournal<T>(wait: Promise<T>): Promise<T> {
    try {
      return await wait;
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await system.journal()}`, { cause: error });
    }
  }

  const status = (): Promise<RolloutStatus> => appliance.cliJson<RolloutStatus>('releases', 'status');
  const ours = async (): Promise<HostStatus> => (await status()).hosts.find((host) => host.host_id === hostId)!;

  /** A release of `version` whose linux-x64 "executable" is `script`, signed with the development key this appliance trusts. */
  async function scriptRelease(version: string, script: string): Promise<string> {
    const dir = join(scratch, version);
    mkdirSync(dir);
    writeFileSync(join(dir, 'ct-ops-agent-linux-x64'), script, { mode: 0o755 });
    // The development release key build:agents made for v1 and v2 (.dev-keys/release.key, PKCS#8).
    const key = signingKeyFromSeed(seedFromPem(readFileSync(join(REPO_ROOT, '.dev-keys/release.key'), 'utf8'))!);
    await writeReleaseFiles({ dir, files: ['ct-ops-agent-linux-x64'], key, version, keyLabel: 'DEVELOPMENT' });
    return dir;
  }

  async function rollOut(dir: string, version: string): Promise<void> {
    const imported = await appliance.cli('releases', 'import', dir);
    assert.equal(imported.code, 0, imported.stderr);
    const started = await appliance.cli('releases', 'rollout', version);
    assert.equal(started.code, 0, started.stderr);
  }

  test('v1 → v2: downloaded, verified twice, swapped by the helper, healthy once it streams; v1 kept for a rollback', { timeout: 300_000 }, async () => {
    await rollOut(await linuxX64ReleaseOf(V2), V2);
    const healthy = await withJournal(waitFor('v2 healthy', async () => {
      const host = await ours();
      return host.phase === 'healthy' && host.update_version === V2 && host.agent_version === V2 ? host : undefined;
    }, 240_000, 1_000));
    assert.equal(healthy.error_code, null);
    assert.ok(readFileSync(root.at('usr/local/bin/ct-ops-agent')).equals(v2), 'v2 installed');
    assert.ok(readFileSync(root.at('usr/local/libexec/ct-ops/ct-ops-agent.previous')).equals(v1), 'v1 kept');
    assert.equal(readFileSync(root.at('usr/local/libexec/ct-ops/agent.version'), 'utf8').trim(), V2);
    assert.equal((await system.show(UNIT, 'ActiveState')).ActiveState, 'active');
    assert.equal((await appliance.host(hostId)).status, 'online');
    // Started once by the helper, never again by systemd: a crash at the first start (hidden by
    // Restart=on-failure, the rollout still healthy) is a defect, not a detail.
    assert.doesNotMatch(await system.journal(UNIT), /restart counter is at|ERR_INTERNAL/);
  });

  for (const [version, label, script, reason] of [
    ['0.1.2', 'exits at start', '#!/bin/sh\necho "broken agent"\nexit 3\n', /new-binary-did-not-start|new-agent-never-streamed|new-binary-did-not-stay-up/],
    ['0.1.3', 'starts but never opens a stream', '#!/bin/sh\nexec sleep 3600\n', /new-agent-never-streamed/],
  ] as const) {
    test(`a v${version} that ${label} is rolled back by the helper; the restored agent reports it and the rollout halts`, { timeout: 300_000 }, async () => {
      await rollOut(await scriptRelease(version, script), version);
      const rolledBack = await withJournal(waitFor(`v${version} rolled back`, async () => {
        const host = await ours();
        return host.phase === 'rolled_back' && host.update_version === version ? host : undefined;
      }, 240_000, 1_000));
      assert.equal(rolledBack.error_code, 'ERR_UPDATE_ROLLED_BACK');
      assert.match(rolledBack.detail ?? '', reason);
      const { rollout } = await status();
      assert.equal(rollout.state, 'halted');
      assert.match(rollout.halted_reason ?? '', new RegExp(hostId));
      assert.ok(readFileSync(root.at('usr/local/bin/ct-ops-agent')).equals(v2), 'v2 restored');
      await withJournal(waitFor('v2 streaming again', async () => ((await appliance.host(hostId)).status === 'online' && (await ours()).agent_version === V2) || undefined, 60_000, 500));
    });
  }
});
