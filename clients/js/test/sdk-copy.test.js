// The hub serves the SDK to the web pages from clients/web/sdk/consult.js, a
// copy of src/consult.js made by `npm run build`. Fail when it is stale.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

test('clients/web/sdk/consult.js is an up-to-date copy of src/consult.js (run `npm run build`)', () => {
  const source = readFileSync(new URL('../src/consult.js', import.meta.url), 'utf8');
  const copy = readFileSync(new URL('../../web/sdk/consult.js', import.meta.url), 'utf8');
  assert.ok(copy === source, 'clients/web/sdk/consult.js differs: run `npm run build` in clients/js');
});
