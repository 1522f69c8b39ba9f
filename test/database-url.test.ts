import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDatabaseSetting } from '../appliance/config/database-url.ts';

test('the display form of a PostgreSQL URL masks every password: userinfo, ?password= and ?sslpassword=', () => {
  const location = parseDatabaseSetting('postgres://ct:s3cret@db.example:5432/ctops?password=q1&sslpassword=q2&sslmode=verify-full', 'test');
  assert.equal(location.kind, 'postgres');
  if (location.kind !== 'postgres') return;
  assert.equal(location.display, 'postgres://ct:***@db.example:5432/ctops?password=***&sslpassword=***&sslmode=verify-full');
  for (const secret of ['s3cret', 'q1', 'q2']) assert.ok(!location.display.includes(secret), secret);
});
