// Unit tests of the SDK's own logic against a scripted fake WebSocket:
// reconnect policy, duplicate dropping, timeouts, retries, helpers.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import {
  ConsultClient,
  ConsultError,
  DashboardList,
  codePointToIndex,
  privacySpan,
  renderTemplate,
  templateVariables,
  tokenSource,
} from '../src/consult.js';

/** A fake socket: records frames, lets the test answer and close it. */
class FakeSocket {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closed = null;
    FakeSocket.instances.push(this);
    setTimeout(() => this.onopen?.(), 0);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code = 1000, reason = '') {
    if (this.closed) return;
    this.closed = { code, reason };
  }

  // ---- test side
  deliver(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  drop(code, reason = '') {
    this.closed = { code, reason };
    this.onclose?.({ code, reason });
  }

  welcome(user = 'dr-lee') {
    this.deliver({
      type: 'welcome',
      protocol: 1,
      conn_id: String(FakeSocket.instances.length),
      user,
      role: 'provider',
      clinic: 'riverside',
      heartbeat_secs: 20,
      max_frame_bytes: 65536,
      server_time: new Date().toISOString(),
    });
  }

  /** Waits for a frame of `type` that has not been answered yet. */
  async next(type) {
    for (let i = 0; i < 200; i += 1) {
      const frame = this.sent.find((f) => f.type === type && !f.answered);
      if (frame) {
        frame.answered = true;
        return frame;
      }
      await tick(5);
    }
    throw new Error(`no ${type} frame sent; got ${JSON.stringify(this.sent)}`);
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

async function latestSocket(count) {
  for (let i = 0; i < 400; i += 1) {
    if (FakeSocket.instances.length >= count) return FakeSocket.instances[count - 1];
    await tick(5);
  }
  throw new Error(`socket #${count} never opened`);
}

function makeClient(options = {}) {
  return new ConsultClient({
    url: 'ws://hub.test/v1/ws',
    token: 'tok-123',
    WebSocket: FakeSocket,
    reconnect: { initialDelayMs: 10, maxDelayMs: 40, goingAwayJitterMs: 5 },
    ...options,
  });
}

async function connected(options) {
  const client = makeClient(options);
  const count = FakeSocket.instances.length + 1;
  const done = client.connect();
  const ws = await latestSocket(count);
  await ws.next('hello');
  ws.welcome();
  await done;
  return { client, ws };
}

afterEach(() => {
  FakeSocket.instances = [];
});

describe('connection', () => {
  test('the token travels only in hello, never in the URL', async () => {
    const { client, ws } = await connected();
    assert.equal(ws.url, 'ws://hub.test/v1/ws');
    assert.ok(!ws.url.includes('tok-123'));
    assert.deepEqual(ws.sent[0], { type: 'hello', token: 'tok-123', answered: true });
    assert.equal(client.state, 'open');
    client.close();
  });

  test('4001 is final: auth_failed, no reconnect, connect() rejects', async () => {
    const client = makeClient();
    let authFailed = null;
    client.on('auth_failed', (e) => {
      authFailed = e;
    });
    const done = client.connect();
    const ws = await latestSocket(1);
    await ws.next('hello');
    ws.deliver({ type: 'error', code: 'token_expired', message: 'token expired' });
    ws.drop(4001, 'authentication failed');
    await assert.rejects(done, (e) => e.code === 'token_expired');
    assert.equal(authFailed.code, 'token_expired');
    assert.equal(client.state, 'closed');
    await tick(80);
    assert.equal(FakeSocket.instances.length, 1, 'no second socket after 4001');
  });

  for (const code of [1001, 1006]) {
    test(`reconnects after ${code} and says hello again`, async () => {
      const { client, ws } = await connected();
      const states = [];
      client.on('state', (s) => states.push(s.state));
      ws.drop(code);
      const ws2 = await latestSocket(2);
      await ws2.next('hello');
      ws2.welcome();
      await client.waitFor('state', (s) => s.state === 'open');
      assert.deepEqual(states, ['reconnecting', 'connecting', 'open']);
      client.close();
    });
  }

  test('an error without a close event still counts as a drop (1006)', async () => {
    const { client, ws } = await connected();
    const states = [];
    client.on('state', (s) => states.push(s));
    ws.onerror?.({});
    const ws2 = await latestSocket(2);
    assert.equal(states[0].state, 'reconnecting');
    assert.equal(states[0].code, 1006);
    await ws2.next('hello');
    ws2.welcome();
    await client.waitFor('state', (s) => s.state === 'open');
    client.close();
  });

  test('backoff grows with jitter and is capped', () => {
    const client = makeClient({
      reconnect: { initialDelayMs: 100, maxDelayMs: 1000, goingAwayJitterMs: 50 },
    });
    const delays = [];
    for (let i = 0; i < 8; i += 1) delays.push(client._backoff(1006));
    for (let i = 0; i < delays.length; i += 1) {
      const base = Math.min(1000, 100 * 2 ** i);
      assert.ok(delays[i] >= base / 2 && delays[i] <= base, `delay ${i}: ${delays[i]}`);
    }
    const fresh = makeClient({ reconnect: { goingAwayJitterMs: 50 } });
    assert.ok(fresh._backoff(1001) <= 50, 'going away reconnects almost at once');
  });

  test('close() stops reconnecting and fails pending commands', async () => {
    const { client, ws } = await connected();
    const ping = client.ping();
    client.close();
    await assert.rejects(ping, (e) => e.code === 'closed');
    assert.ok(ws.closed);
    await tick(50);
    assert.equal(FakeSocket.instances.length, 1);
  });
});

describe('commands', () => {
  test('answers are matched by id; errors carry the code', async () => {
    const { client, ws } = await connected();
    const p1 = client.ping();
    const p2 = client.open('k1');
    const f1 = await ws.next('ping');
    const f2 = await ws.next('open');
    assert.notEqual(f1.id, f2.id);
    ws.deliver({ type: 'error', id: f2.id, code: 'forbidden', message: 'nope' });
    ws.deliver({ type: 'ok', id: f1.id, result: { kind: 'pong', server_time: 'now' } });
    assert.equal((await p1).kind, 'pong');
    await assert.rejects(p2, (e) => e.code === 'forbidden' && e.command === 'open');
    client.close();
  });

  test('a command without an answer times out', async () => {
    const { client } = await connected({ requestTimeoutMs: 30 });
    await assert.rejects(client.ping(), (e) => e.code === 'timeout');
    client.close();
  });

  test('an unanswered send is re-sent with the same client_msg_id after a reconnect', async () => {
    const { client, ws } = await connected();
    const sending = client.send('k1', 'hello');
    const first = await ws.next('send');
    ws.drop(1006);
    const ws2 = await latestSocket(2);
    await ws2.next('hello');
    ws2.welcome();
    const again = await ws2.next('send');
    assert.equal(again.client_msg_id, first.client_msg_id);
    assert.equal(again.body, 'hello');
    ws2.deliver({
      type: 'ok',
      id: again.id,
      result: { kind: 'sent', seq: 3, duplicate: true, sent_at: 'now' },
    });
    const result = await sending;
    assert.equal(result.seq, 3);
    assert.equal(result.client_msg_id, first.client_msg_id);
    client.close();
  });

  test('a non-idempotent command in flight fails with disconnected', async () => {
    const { client, ws } = await connected();
    const opening = client.open('k1');
    await ws.next('open');
    ws.drop(1006);
    await assert.rejects(opening, (e) => e.code === 'disconnected');
    client.close();
  });
});

describe('rooms', () => {
  const msg = (seq, sender = 'pat-alex') => ({
    type: 'message',
    message: {
      consultation_id: 'k1',
      seq,
      sender,
      sender_role: 'patient',
      kind: 'chat',
      body: `m${seq}`,
      sent_at: 'now',
    },
  });
  const joined = (lastSeq) => ({
    kind: 'joined',
    consultation: { id: 'k1', last_seq: lastSeq, status: 'waiting_for_patient' },
    members: [],
    replayed: 0,
  });

  test('duplicate seqs are dropped and re-joins resume from the last seq', async () => {
    const { client, ws } = await connected();
    const seen = [];
    client.on('message', (f) => seen.push(f.message.seq));
    const joining = client.join('k1', { since: 0 });
    const j = await ws.next('join');
    assert.equal(j.since, 0);
    ws.deliver(msg(1));
    ws.deliver(msg(2));
    ws.deliver({ type: 'ok', id: j.id, result: joined(2) });
    await joining;
    ws.deliver(msg(2)); // duplicate
    ws.deliver(msg(3));
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(client.lastSeq('k1'), 3);

    ws.drop(1001);
    const ws2 = await latestSocket(2);
    await ws2.next('hello');
    ws2.welcome();
    const rejoin = await ws2.next('join');
    assert.equal(rejoin.consultation_id, 'k1');
    assert.equal(rejoin.since, 3);
    ws2.deliver(msg(3)); // a duplicate across the reconnect
    ws2.deliver(msg(4));
    ws2.deliver({ type: 'ok', id: rejoin.id, result: joined(4) });
    await client.waitFor('state', (s) => s.state === 'open');
    assert.deepEqual(seen, [1, 2, 3, 4]);
    client.close();
  });

  test('a room joined without since resumes from the last_seq it joined at', async () => {
    const { client, ws } = await connected();
    const joining = client.join('k1');
    const j = await ws.next('join');
    assert.equal(j.since, undefined);
    ws.deliver({ type: 'ok', id: j.id, result: joined(7) });
    await joining;
    ws.drop(1006);
    const ws2 = await latestSocket(2);
    await ws2.next('hello');
    ws2.welcome();
    const rejoin = await ws2.next('join');
    assert.equal(rejoin.since, 7);
    client.close();
  });

  test('the dashboard is re-watched and visibility restored after a reconnect', async () => {
    const { client, ws } = await connected();
    const watching = client.watchDashboard();
    const w = await ws.next('watch_dashboard');
    ws.deliver({ type: 'ok', id: w.id, result: { kind: 'dashboard_snapshot', entries: [] } });
    await watching;
    const vis = client.visibility(false);
    const v = await ws.next('visibility');
    ws.deliver({ type: 'ok', id: v.id });
    await vis;
    ws.drop(1006);
    const ws2 = await latestSocket(2);
    await ws2.next('hello');
    const snapshot = client.waitFor('dashboard_snapshot', (s) => s.resumed);
    ws2.welcome();
    const w2 = await ws2.next('watch_dashboard');
    const v2 = await ws2.next('visibility');
    assert.equal(v2.foreground, false);
    ws2.deliver({ type: 'ok', id: w2.id, result: { kind: 'dashboard_snapshot', entries: [] } });
    ws2.deliver({ type: 'ok', id: v2.id });
    await snapshot;
    client.close();
  });

  test('autoAck acknowledges others\' messages as delivered, coalesced', async () => {
    const { client, ws } = await connected({ autoAck: 'delivered' });
    const joining = client.join('k1');
    const j = await ws.next('join');
    ws.deliver({ type: 'ok', id: j.id, result: joined(0) });
    await joining;
    ws.deliver(msg(1));
    ws.deliver(msg(2));
    ws.deliver(msg(3, 'dr-lee')); // own message: no ack needed
    const ack = await ws.next('ack');
    assert.equal(ack.seq, 2);
    assert.equal(ack.receipt, 'delivered');
    await tick(20);
    assert.equal(ws.sent.filter((f) => f.type === 'ack').length, 1);
    client.close();
  });

  test('events() iterates over events and ends on close', async () => {
    const { client, ws } = await connected();
    const seen = [];
    const loop = (async () => {
      for await (const event of client.events(['typing', 'status'])) seen.push(event.type);
    })();
    ws.deliver({ type: 'typing', consultation_id: 'k1', user: 'u', role: 'patient', active: true });
    ws.deliver({ type: 'presence', consultation_id: 'k1', user: 'u', role: 'patient', online: true });
    ws.deliver({ type: 'status', consultation_id: 'k1', status: 'patient_ready' });
    await tick(5);
    client.close();
    await loop;
    assert.deepEqual(seen, ['typing', 'status']);
  });
});

describe('helpers', () => {
  test('tokenSource fetches a fresh token per call, or returns the pasted one', async () => {
    assert.equal(await tokenSource({ initial: 'pasted' })(), 'pasted');
    let calls = 0;
    const fetch = async (url, init) => {
      calls += 1;
      assert.equal(url, '/platform/token');
      assert.equal(init.credentials, 'include');
      return { ok: true, json: async () => ({ token: `t${calls}` }) };
    };
    const source = tokenSource({ url: '/platform/token', initial: 'pasted', fetch });
    assert.equal(await source(), 't1');
    assert.equal(await source(), 't2');
    const refused = tokenSource({ url: '/x', fetch: async () => ({ ok: false, status: 401 }) });
    await assert.rejects(refused(), (error) => error.code === 'invalid_token');
  });

  test('template variables and rendering', () => {
    const body = 'I am running {minutes} minutes behind, {minutes} min. {x}';
    assert.deepEqual(templateVariables(body), ['minutes', 'x']);
    assert.equal(
      renderTemplate(body, { minutes: '10' }),
      'I am running 10 minutes behind, 10 min. {x}',
    );
  });

  test('DashboardList keeps the highest rev and drops finished rows', () => {
    const list = new DashboardList();
    const row = (id, status, rev, waiting) => ({
      consultation_id: id,
      status,
      rev,
      waiting_since: waiting,
      scheduled_at: waiting,
    });
    list.applySnapshot([row('b', 'waiting_for_patient', 3, '2026-01-01T10:00:00Z'), row('a', 'patient_ready', 5, '2026-01-01T09:00:00Z')]);
    assert.deepEqual(list.list().map((r) => r.consultation_id), ['a', 'b']);
    assert.equal(list.apply(row('a', 'waiting_for_patient', 4, '2026-01-01T09:00:00Z')), false);
    assert.equal(list.get('a').status, 'patient_ready');
    assert.equal(list.apply(row('a', 'ended', 6)), true);
    assert.equal(list.get('a'), undefined);
    assert.equal(list.apply(row('a', 'in_progress', 5)), false, 'an older row does not come back');
    assert.equal(list.list().length, 1);
  });
});

describe('privacySpan', () => {
  test('turns the code-point span of a privacy refusal into string indices', () => {
    // "Café news — Alex…": the hub reports characters 12..16.
    const text = 'Café news — Alex…';
    const error = new ConsultError(
      'privacy_violation',
      'the text contains a name at characters 12..16; alerts must not carry names or health details',
    );
    assert.deepEqual(error.span, { start: 12, end: 16 });
    const span = privacySpan(error, text);
    assert.equal(text.slice(span.start, span.end), 'Alex');
  });

  test('counts a character outside the BMP as one code point', () => {
    const text = '😀 hi Alex';
    assert.equal(codePointToIndex(text, 1), 2);
    const error = new ConsultError('privacy_violation', 'the text contains a name at characters 5..9; alerts must not carry names or health details');
    const span = privacySpan(error, text);
    assert.equal(text.slice(span.start, span.end), 'Alex');
  });

  test('is null for other errors', () => {
    assert.equal(privacySpan(new ConsultError('rate_limited', 'at characters 1..2'), 'abc'), null);
  });
});
