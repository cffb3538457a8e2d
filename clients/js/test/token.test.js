// Token lifetime against a real hub with no leeway: a `token` function keeps
// the connection open past its first token's expiry through in-band
// `refresh`, without reconnecting; without it the hub closes with 4005 and
// the client reconnects with a fresh token; a revoked token's connection
// gets 4006.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConsultClient } from '../src/consult.js';
import { startHub } from './support/hub.js';

let hub;
const clients = [];

function client(token, options = {}) {
  const c = new ConsultClient({
    url: hub.wsUrl,
    token,
    requestTimeoutMs: 5000,
    handshakeTimeoutMs: 1500,
    reconnect: { initialDelayMs: 100, maxDelayMs: 400, goingAwayJitterMs: 50 },
    ...options,
  });
  clients.push(c);
  return c;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(check, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

before(async () => {
  hub = await startHub({ env: { CONSULT_AUTH__LEEWAY_SECS: '0' } });
});

after(async () => {
  for (const c of clients) c.close();
  await hub?.dispose();
});

/** A client of the consultation's provider whose tokens last 3 s. */
async function shortLived(options = {}) {
  const consultation = await hub.consultation();
  const { provider, clinic } = consultation;
  let issued = 0;
  const tokens = async () => {
    issued += 1;
    return hub.token(provider.id, 'provider', clinic, 3);
  };
  const c = client(tokens, options);
  const states = [];
  c.on('state', (s) => states.push(s));
  const received = [];
  c.on('message', (f) => received.push(f.message.body));
  const welcome = await c.connect();
  await c.join(consultation.consultation.id, { since: 0 });
  const patient = client(consultation.patientToken);
  await patient.connect();
  return { c, welcome, states, received, patient, consultation, issued: () => issued };
}

describe('token lifetime', () => {
  test('a token function keeps the connection open past expiry without reconnecting', async () => {
    const { c, welcome, states, received, patient, consultation, issued } = await shortLived();
    assert.ok(welcome.expires_at, 'welcome says when the connection expires');
    const refreshed = [];
    c.on('token_refreshed', (e) => refreshed.push(e.expires_at));
    await sleep(6000);
    await patient.send(consultation.consultation.id, 'six seconds later');
    await eventually(() => received.includes('six seconds later'), 'the message');
    assert.ok(refreshed.length >= 2, `refreshed ${refreshed.length} times`);
    assert.ok(issued() >= 3);
    assert.deepEqual(
      states.filter((s) => s.state === 'reconnecting'),
      [],
      'never reconnected',
    );
  });

  test('without in-band refresh the hub closes with 4005 and the client reconnects', async () => {
    const { states, received, patient, consultation } = await shortLived({ refreshBeforeMs: false });
    await eventually(
      () => states.some((s) => s.state === 'reconnecting' && s.code === 4005),
      'a 4005 close',
      6000,
    );
    await eventually(() => states.at(-1).state === 'open', 'reconnected');
    await patient.send(consultation.consultation.id, 'after the reconnect');
    await eventually(() => received.includes('after the reconnect'), 'the message');
  });

  test('a revoked token closes the connection with 4006', async () => {
    const { provider, clinic } = await hub.consultation();
    const { jti, token } = await hub.api('POST', '/v1/tokens', {
      user: provider.id,
      role: 'provider',
      clinic,
      ttl_secs: 600,
    });
    const c = client(token, { reconnect: false });
    const states = [];
    c.on('state', (s) => states.push(s));
    await c.connect();
    await hub.api('POST', '/v1/revocations/tokens', { jti });
    await eventually(() => states.some((s) => s.state === 'closed' && s.code === 4006), '4006');
  });
});
