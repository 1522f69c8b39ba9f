import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { compareVersions } from '../appliance/inventory/version-compare.ts';
import { hasCommand } from './helpers/tools.ts';

/** Versions as real packages carry them: Debian (epochs, ~, +debNuM, +dfsg), rpm, brew, Windows. */
const DEBIAN_VERSIONS = [
  '1.0~rc1', '1.0~rc1-1', '1.0', '1.0-1', '1.0-1~bpo12+1', '1.0.1', '1.0a', '1.0+dfsg-1', '1.9', '1.10', '1.10.0',
  '2.0', '2.36-9+deb12u4', '2.36-9+deb12u10', '2.36-9+deb12u9', '3.0.11-1~deb12u2', '3.0.13-1~deb12u1', '3.0.13-1',
  '7.88.1-10+deb12u8', '1:7.88.1-10', '1:1.0', '2:1.0', '0:2.1', '10:0.1', '252.33-1~deb12u1', '252.33-1',
  '20230311', '0.0.0~git20230101.abc1234-1', '0.0.0~git20240101.0def567-1', '5.2.15-2+b7', '5.2.15-2', '5.2.15-2+b10',
  '1.2.3.4', '1.2.3.4.5', '0.9', '01.0', '1.00', '3.2.1-0ubuntu1', '3.2.1-0ubuntu1.1', '4.19.0+really4.18.0-1',
];

const sign = (value: number): number => Math.sign(value);

describe('compareVersions orders versions as dpkg does', () => {
  test('the cases an admin meets: epochs, tildes, numeric runs and Debian security revisions', () => {
    const cases: Array<[string, '<' | '=' | '>', string]> = [
      ['1:1.0', '>', '2.0'], // an epoch outranks any upstream version
      ['1.0~rc1', '<', '1.0'], // ~ sorts before the end of the string
      ['1.0~rc1', '<', '1.0~rc2'],
      ['1.0~~', '<', '1.0~'],
      ['1.10', '>', '1.9'], // digit runs compare as numbers
      ['2.36-9+deb12u4', '<', '2.36-9+deb12u10'],
      ['1.0a', '>', '1.0'], // a letter after the end
      ['1.0a', '<', '1.0+'], // letters before non-letters
      ['1.0', '<', '1.0-1'], // no revision is revision 0
      ['1.0-0', '=', '1.0'],
      ['1.00', '=', '1.0'], // leading zeros do not count
      ['0:1.0', '=', '1.0'],
      ['1.0-1~bpo12+1', '<', '1.0-1'], // a backport sorts before the release it came from
      ['3.0.13-1~deb12u1', '<', '3.0.13-1'],
      ['20240101123456789012345', '>', '20240101123456789012344'], // no overflow on long digit runs
      ['1.2.3-4.el9', '<', '1.2.3-10.el9'], // rpm release
      ['10.0.19041.1', '>', '10.0.9200.16384'], // Windows registry
      ['1.2.3_1', '>', '1.2.3'], // brew revision
      ['epoch:1.0', '>', '1.0'], // not digits before ':' is no epoch: the whole string is the upstream version
    ];
    for (const [a, relation, b] of cases) {
      const expected = relation === '<' ? -1 : relation === '=' ? 0 : 1;
      assert.equal(compareVersions(a, b), expected, `${a} ${relation} ${b}`);
      assert.equal(compareVersions(b, a), -expected || 0, `${b} reversed`);
    }
  });

  test('sorting gives the order a person expects', () => {
    const shuffled = ['1.10', '1:0.1', '1.0~beta', '1.9', '1.0', '1.0-2', '1.0~rc1', '1.0.1'];
    assert.deepEqual([...shuffled].sort(compareVersions), ['1.0~beta', '1.0~rc1', '1.0', '1.0-2', '1.0.1', '1.9', '1.10', '1:0.1']);
  });

  test('the order is total and consistent: antisymmetric and transitive over every triple', () => {
    const all = DEBIAN_VERSIONS;
    for (const a of all) {
      assert.equal(compareVersions(a, a), 0);
      for (const b of all) {
        assert.equal(compareVersions(a, b), -compareVersions(b, a) || 0, `${a} vs ${b}`);
        for (const c of all) {
          if (compareVersions(a, b) <= 0 && compareVersions(b, c) <= 0) assert.ok(compareVersions(a, c) <= 0, `${a} <= ${b} <= ${c}`);
        }
      }
    }
  });

  test('every pair agrees with the real dpkg --compare-versions', () => {
    assert.ok(hasCommand('dpkg'), 'needs dpkg (the Debian machine the suite runs on has it)');
    const pairs = DEBIAN_VERSIONS.flatMap((a, index) => DEBIAN_VERSIONS.slice(index + 1).map((b) => [a, b] as const));
    // One shell for all pairs: a dpkg process per comparison, but no node round trip per pair.
    const script = 'while read a b; do if dpkg --compare-versions "$a" lt "$b"; then echo -1; elif dpkg --compare-versions "$a" eq "$b"; then echo 0; else echo 1; fi; done';
    const answers = execFileSync('sh', ['-c', script], { input: pairs.map(([a, b]) => `${a} ${b}\n`).join(''), encoding: 'utf8' }).trim().split('\n').map(Number);
    assert.equal(answers.length, pairs.length);
    const disagreements = pairs.filter(([a, b], index) => sign(compareVersions(a, b)) !== answers[index]).map(([a, b]) => `${a} vs ${b}`);
    assert.deepEqual(disagreements, []);
  });
});
