/**
 * The appliance's own unit (systemd/ct-ops-appliance.service, installed by image/install.sh) is
 * hardened: systemd's own exposure score stays at or below 2.5 with what a network server needs,
 * and MemoryDenyWriteExecute stays off (V8's JIT needs writable-then-executable pages). The image's
 * installer scripts are POSIX sh, shellcheck-clean, with their exit codes documented.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REPO_ROOT } from './helpers/processes.ts';

const UNIT = `${REPO_ROOT}systemd/ct-ops-appliance.service`;

test('systemd-analyze security rates the appliance unit at most 2.5 (exposure), running as its own user with no capabilities', () => {
  const result = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT], { encoding: 'utf8', timeout: 60_000 });
  const score = /Overall exposure level for ct-ops-appliance\.service: (\d+\.\d+)/.exec(result.stdout);
  assert.ok(score, `no score in:\n${result.stdout}\n${result.stderr}`);
  assert.ok(Number(score[1]) <= 2.5, `exposure ${score[1]} > 2.5:\n${result.stdout}`);
  const unit = readFileSync(UNIT, 'utf8');
  assert.match(unit, /^User=ct-ops-appliance$/m);
  assert.match(unit, /^CapabilityBoundingSet=$/m);
  assert.match(unit, /^ExecStart=\/opt\/ct-ops\/current\/bin\/ct-ops-appliance serve --config \/etc\/ct-ops\/appliance\.toml$/m);
  assert.match(unit, /^MemoryDenyWriteExecute=no$/m);
});

test('image/install.sh and image/uninstall.sh are shellcheck-clean POSIX sh with set -eu and documented exit codes', () => {
  const scripts = ['image/install.sh', 'image/uninstall.sh'].map((path) => `${REPO_ROOT}${path}`);
  const checked = spawnSync('shellcheck', ['--shell=sh', '--severity=style', ...scripts], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(checked.status, 0, checked.stdout + checked.stderr);
  for (const script of scripts) {
    const text = readFileSync(script, 'utf8');
    assert.ok(text.startsWith('#!/bin/sh\n'), script);
    assert.match(text, /^set -eu$/m, script);
    assert.match(text, /^# Exit codes:/m, script);
  }
});
