// The SDK against a real consult-hub process (target/debug/consult-hub):
// consultations and tokens come from the REST API with the test API key.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConsultClient, ConsultError, DashboardList, privacySpan } from '../src/consult.js';
import { startHub, uid } from './support/hub.js';

let hub;
const clients = [];

function client(token, options = {}) {
  const c = new ConsultClient({
    url: hub.wsUrl,
    token,
    requestTimeoutMs: 5000,
    // A socket opened while the hub is stopping may hang without any event
    // (Node's WebSocket); give up on it quickly.
    handshakeTimeoutMs: 1500,
    reconnect: { initialDelayMs: 100, maxDelayMs: 400, goingAwayJitterMs: 50 },
    ...options,
  });
  clients.push(c);
  return c;
}

/** Collects events of `type` into an array. */
function collect(c, type) {
  const seen = [];
  c.on(type, (frame) => seen.push(frame));
  return seen;
}

async function eventually(check, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  hub = await startHub();
});

after(async () => {
  for (const c of clients) c.close();
  await hub?.dispose();
});

describe('handshake', () => {
  test('hello with a token gets welcome', async () => {
    const { provider, providerToken, clinic } = await hub.consultation();
    const c = client(providerToken);
    const welcome = await c.connect();
    assert.equal(welcome.user, provider.id);
    assert.equal(welcome.role, 'provider');
    assert.equal(welcome.clinic, clinic);
    assert.equal(welcome.protocol, 1);
    assert.equal((await c.ping()).kind, 'pong');
  });

  test('a bad token is refused with 4001 and not retried', async () => {
    const c = client('not-a-jwt');
    const states = collect(c, 'state');
    await assert.rejects(c.connect(), (e) => e instanceof ConsultError && e.code === 'invalid_token');
    assert.equal(c.state, 'closed');
    assert.equal(states.at(-1).code, 4001);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(states.filter((s) => s.state === 'connecting').length, 1, 'one attempt only');
  });
});

describe('chat', () => {
  test('send, receive, receipts and typing between provider and patient', async () => {
    const { consultation, providerToken, patientToken, patient } = await hub.consultation();
    const id = consultation.id;
    const doc = client(providerToken);
    const pat = client(patientToken, { autoAck: 'delivered' });
    await doc.connect();
    await pat.connect();
    await doc.join(id, { since: 0 });
    await pat.join(id, { since: 0 });
    const patMessages = collect(pat, 'message');
    const receipts = collect(doc, 'receipt');
    const typing = collect(pat, 'typing');

    await doc.typing(id, true);
    await eventually(() => typing.find((t) => t.active && t.role === 'provider'), 'typing');

    const sent = await doc.send(id, 'Running 5 minutes late.');
    assert.equal(sent.kind, 'sent');
    assert.equal(sent.duplicate, false);
    const again = await doc.send(id, 'Running 5 minutes late.', { clientMsgId: sent.client_msg_id });
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, sent.seq);

    await eventually(() => patMessages.length === 1, 'the patient gets the message');
    assert.equal(patMessages[0].message.body, 'Running 5 minutes late.');
    // autoAck delivered, then the patient reads it.
    await eventually(
      () => receipts.find((r) => r.user === patient.id && r.receipt === 'delivered' && r.seq === sent.seq),
      'delivered receipt',
    );
    await pat.ack(id, sent.seq, 'read');
    await eventually(
      () => receipts.find((r) => r.user === patient.id && r.receipt === 'read' && r.seq === sent.seq),
      'read receipt',
    );
    const history = await pat.history(id, { limit: 10 });
    assert.deepEqual(history.messages.map((m) => m.seq), [sent.seq]);
  });
});

describe('dashboard and status', () => {
  test('the dashboard shows waiting, then ready after the patient taps ready', async () => {
    const { consultation, providerToken, patientToken } = await hub.consultation();
    const id = consultation.id;
    const doc = client(providerToken);
    const pat = client(patientToken);
    await doc.connect();
    await pat.connect();
    const list = new DashboardList();
    doc.on('dashboard_snapshot', ({ entries }) => list.applySnapshot(entries));
    doc.on('dashboard', ({ entry }) => list.apply(entry));
    const entries = await doc.watchDashboard();
    assert.equal(entries.length, 1);
    assert.equal(list.get(id).status, 'waiting_for_patient');
    assert.equal(list.get(id).patient_name, 'Alex Rivera');

    const ready = await pat.ready(id);
    assert.equal(ready.consultation.status, 'patient_ready');
    await eventually(() => list.get(id)?.status === 'patient_ready', 'the row turns ready');

    const entered = await doc.enter(id);
    assert.equal(entered.consultation.status, 'in_progress');
    await doc.end(id);
    await eventually(() => !list.get(id), 'the ended row leaves the list');
  });
});

describe('quick messages and templates', () => {
  test('list templates, send a quick message without entering, manage own templates', async () => {
    const { consultation, providerToken, patientToken, provider } = await hub.consultation();
    const id = consultation.id;
    const doc = client(providerToken);
    const pat = client(patientToken);
    await doc.connect();
    await pat.connect();
    await pat.join(id, { since: 0 });
    const patMessages = collect(pat, 'message');

    const templates = await doc.listTemplates();
    const behind = templates.find((t) => t.title === 'Running behind');
    assert.ok(behind, JSON.stringify(templates));
    assert.deepEqual(behind.variables, ['minutes']);

    const result = await doc.quickMessage(id, behind.id, { minutes: '10' });
    assert.equal(result.kind, 'notified');
    await eventually(() => patMessages.length === 1, 'the quick message arrives');
    assert.equal(patMessages[0].message.kind, 'quick');
    assert.equal(
      patMessages[0].message.body,
      'I am running 10 minutes behind. Thank you for your patience.',
    );

    const own = await doc.saveTemplate({
      providerId: provider.id,
      title: 'Lab results',
      body: 'Back in {minutes} minutes.',
    });
    assert.equal(own.provider_id, provider.id);
    assert.ok((await doc.listTemplates()).some((t) => t.id === own.id));
    await doc.deleteTemplate(own.id);
    assert.ok(!(await doc.listTemplates()).some((t) => t.id === own.id));
    await assert.rejects(pat.listTemplates(), (e) => e.code === 'forbidden');
  });
});

describe('alerts and notifications', () => {
  test('privacy_violation for a name, channel_unavailable without consent, then an SMS alert', async () => {
    const { consultation, providerToken, patientToken } = await hub.consultation();
    const id = consultation.id;
    const doc = client(providerToken);
    const pat = client(patientToken);
    await doc.connect();
    await pat.connect();
    await doc.watchDashboard();
    const notifications = collect(doc, 'notification');

    await assert.rejects(
      doc.alert(id, 'Alex, please join your appointment now.', ['sms']),
      (e) => e.code === 'privacy_violation',
    );
    // The hub counts code points; the SDK turns them into string indices.
    const named = '😀 Café — Al\u200bex’s visit';
    await assert.rejects(doc.alert(id, named, ['sms']), (e) => {
      const span = privacySpan(e, named);
      assert.equal(named.slice(span.start, span.end), 'Al\u200bex');
      return true;
    });
    await assert.rejects(
      doc.alert(id, 'Please open the app to continue your appointment.', ['sms']),
      (e) => e.code === 'channel_unavailable',
    );
    await pat.setSmsConsent(true);
    await pat.visibility(false);
    const sent = await doc.alert(id, 'Please open the app to continue your appointment.', ['sms']);
    assert.equal(sent.kind, 'notified');
    assert.equal(sent.notifications.length, 1);
    assert.equal(sent.notifications[0].channel, 'sms');
    await eventually(() => notifications.length > 0, 'a live notification frame');
    const listed = await doc.listNotifications(id);
    assert.ok(listed.some((n) => n.id === sent.notifications[0].id && n.reason === 'alert'));
    await assert.rejects(pat.listNotifications(id), (e) => e.code === 'forbidden');
  });
});

describe('closes', () => {
  test('a client still sending when rate limited gets every answer, then close 4004', async () => {
    const { providerToken } = await hub.consultation();
    // No reconnect: the test reads what this one connection was told.
    const c = client(providerToken, { reconnect: { delayMs: () => 60000 } });
    const states = collect(c, 'state');
    await c.connect();
    // Far past the hub's burst (40) and its refusals in a row (50).
    const settled = await Promise.allSettled(Array.from({ length: 150 }, () => c.ping()));
    const answers = settled.map((s) =>
      s.status === 'fulfilled' ? s.value.kind : s.reason instanceof ConsultError ? s.reason.code : 'other',
    );
    const hubAnswers = answers.filter((a) => a === 'pong' || a === 'rate_limited');
    // Every command the hub read before closing was answered, in order:
    // pongs first, then refusals; the rest never reached a live session.
    assert.ok(answers.filter((a) => a === 'pong').length >= 40, answers.join(','));
    assert.ok(answers.filter((a) => a === 'rate_limited').length >= 50, answers.join(','));
    assert.deepEqual(answers.slice(0, hubAnswers.length), hubAnswers, answers.join(','));
    assert.ok(
      answers.slice(hubAnswers.length).every((a) => a === 'disconnected'),
      answers.join(','),
    );
    await eventually(() => states.find((s) => s.code === 4004), 'close 4004');
  });
});

describe('reconnect against a restarting hub', () => {
  for (const [signal, code] of [
    ['SIGTERM', 1001],
    ['SIGKILL', 1006],
  ]) {
    test(`after ${code} (${signal}) it resumes rooms with since and re-watches the dashboard`, async () => {
      const { consultation, providerToken, patientToken } = await hub.consultation();
      const id = consultation.id;
      // The patient waits (a minute of backoff) until the test lets it
      // reconnect, so that messages are sent while it is away and must be
      // replayed by `join … since`.
      const pat = client(patientToken, { reconnect: { delayMs: () => 60000 } });
      const doc = client(providerToken);
      await pat.connect();
      await doc.connect();
      await pat.join(id, { since: 0 });
      const received = collect(pat, 'message');
      const patStates = collect(pat, 'state');
      const snapshots = collect(doc, 'dashboard_snapshot');
      await doc.watchDashboard();
      await doc.send(id, 'before the restart');
      await eventually(() => received.length === 1, 'the first message');

      await hub.stop(signal);
      await eventually(() => patStates.find((s) => s.state === 'reconnecting'), 'reconnecting');
      assert.equal(patStates.find((s) => s.state === 'reconnecting').code, code);
      await hub.start();

      // The provider's client comes back first and sends while the patient is away.
      await eventually(() => doc.state === 'open', 'the provider reconnected', 8000);
      const a = await doc.send(id, 'while you were away 1');
      const b = await doc.send(id, 'while you were away 2');
      assert.equal(pat.state, 'reconnecting', 'the patient is still away');
      assert.equal(pat.reconnectNow(), true);

      await eventually(() => pat.state === 'open', 'the patient reconnected', 8000);
      await eventually(() => received.length === 3, 'replayed messages', 5000);
      assert.deepEqual(
        received.map((f) => f.message.body),
        ['before the restart', 'while you were away 1', 'while you were away 2'],
      );
      assert.deepEqual(received.map((f) => f.message.seq), [1, a.seq, b.seq]);
      // Live again after the resume, exactly once.
      const c = await doc.send(id, 'live again');
      await eventually(() => received.length === 4, 'live message');
      assert.equal(received[3].message.seq, c.seq);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(received.length, 4, 'no duplicates');
      assert.ok(snapshots.some((s) => s.resumed), 'dashboard re-watched');
      assert.equal(snapshots.at(-1).entries.length, 1);
    });
  }
});

test('uid is unique', () => {
  assert.notEqual(uid('x'), uid('x'));
});
