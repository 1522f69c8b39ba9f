import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CtOpsError, ERROR_CODES, ExitCode, GrpcCode, STATUS, catalogueCodeOf, codeFromGrpcDetails, errorCodeOf, grpcDetails } from '../common/errors.ts';

test('docs/errors.md lists every error code with its HTTP, gRPC and exit statuses', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  for (const code of ERROR_CODES) {
    const { http, grpc, exit } = STATUS[code];
    assert.match(doc, new RegExp(`\\| \`${code}\` \\| ${http} \\| ${grpc} \\| ${exit} \\|`), `${code} is missing or stale in docs/errors.md`);
  }
});

test('every code maps to a known gRPC status and exit code', () => {
  const grpcCodes = new Set<number>(Object.values(GrpcCode));
  const exitCodes = new Set<number>(Object.values(ExitCode));
  for (const code of ERROR_CODES) {
    assert.ok(grpcCodes.has(STATUS[code].grpc), code);
    assert.ok(exitCodes.has(STATUS[code].exit), code);
    assert.ok(STATUS[code].http >= 400 && STATUS[code].http < 600, code);
  }
});

test('a gRPC status written by the appliance gives back its error code', () => {
  const error = new CtOpsError('ERR_TOKEN_EXHAUSTED', 'no uses left', { token_id: 'etk_1' });
  assert.equal(codeFromGrpcDetails(grpcDetails(error)), 'ERR_TOKEN_EXHAUSTED');
  assert.equal(codeFromGrpcDetails('Received RST_STREAM with code 2'), undefined);
  assert.deepEqual(error.toJSON(), { code: 'ERR_TOKEN_EXHAUSTED', message: 'no uses left', details: { token_id: 'etk_1' } });
});

test('the code of a caught value is read alike whatever threw it; only catalogue codes count as ours', () => {
  const ours = new CtOpsError('ERR_TASK_CANCELLED', 'cancelled');
  const sqlstate = Object.assign(new Error('deadlock detected'), { code: '40P01' });
  assert.equal(errorCodeOf(ours), 'ERR_TASK_CANCELLED');
  assert.equal(errorCodeOf(sqlstate), '40P01');
  assert.equal(errorCodeOf({ code: 'ERR_TOKEN_EXHAUSTED', message: 'an error body' }), 'ERR_TOKEN_EXHAUSTED');
  for (const none of [undefined, null, 'ERR_INTERNAL', 42, new Error('plain'), { code: 7 }]) assert.equal(errorCodeOf(none), undefined, String(none));
  assert.equal(catalogueCodeOf(ours), 'ERR_TASK_CANCELLED');
  assert.equal(catalogueCodeOf({ code: 'ERR_TOKEN_EXHAUSTED' }), 'ERR_TOKEN_EXHAUSTED');
  assert.equal(catalogueCodeOf(sqlstate), undefined);
  assert.equal(catalogueCodeOf({ code: 'ERR_NOT_IN_THE_CATALOGUE' }), undefined);
});

test('docs/errors.md lists every build:agents error code with its exit code', async () => {
  const { BUILD_AGENTS_ERRORS } = await import('../scripts/agents/errors.mjs');
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  for (const [code, { exit }] of Object.entries(BUILD_AGENTS_ERRORS)) {
    assert.match(doc, new RegExp(`\\| \`${code}\` \\| ${exit} \\|`), `${code} is missing or stale in docs/errors.md`);
  }
});

test('docs/errors.md lists every build:image error code with its exit code', async () => {
  const { BUILD_IMAGE_ERRORS } = await import('../scripts/image/errors.mjs');
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('## Build tool: `npm run build:image`'));
  for (const [code, { exit }] of Object.entries(BUILD_IMAGE_ERRORS)) {
    assert.match(section, new RegExp(`\\| \`${code}\` \\| ${exit} \\|`), `${code} is missing or stale in docs/errors.md`);
  }
});
