// Patient web app (stands in for the mobile app): consultation status, the
// "I'm Ready for My Appointment" button, entering, chat with delivered/read
// receipts, highlighted alerts. Uses the SDK served at /sdk/consult.js.

import { ConsultClient, tokenSource, typingNotifier } from '/sdk/consult.js';

const TOKEN_KEY = 'consult.patient.token';
const CONSULTATION_KEY = 'consult.patient.consultation';

const STATUS = {
  scheduled: {
    pill: 'Scheduled',
    title: 'Your appointment is scheduled',
    text: 'We will let you know when your provider opens it. You can tell them you are ready now.',
  },
  waiting_for_patient: {
    pill: 'Your provider is waiting',
    title: 'Your provider is ready to see you',
    text: 'Tap the button below when you are ready to start.',
  },
  patient_ready: {
    pill: 'You are ready',
    title: 'Thanks — your provider knows you are ready',
    text: 'Stay on this page; your provider will start the consultation shortly.',
  },
  in_progress: {
    pill: 'In progress',
    title: 'Your consultation has started',
    text: 'Your provider has entered the consultation.',
  },
  ended: { pill: 'Ended', title: 'This appointment has ended', text: 'Thank you.' },
  cancelled: {
    pill: 'Cancelled',
    title: 'This appointment was cancelled',
    text: 'Your clinic will contact you to reschedule.',
  },
};

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function showError(el, error) {
  if (!error) {
    el.hidden = true;
    el.textContent = '';
    return;
  }
  el.textContent =
    typeof error === 'string' ? error : error.message && error.message !== error.code ? error.message : `Something went wrong (${error.code}).`;
  el.hidden = false;
}

function setConn(state, text) {
  $('conn').dataset.state = state;
  $('conn').textContent = text;
}

const app = {
  client: null,
  welcome: null,
  id: null,
  consultation: null,
  staffMessagedFirst: false,
  entered: false,
  messages: new Map(),
  readAckTimer: null,
  typing: null,
  typingTimer: null,
};

// ---------------------------------------------------------------- sign-in

function fragmentConsultation() {
  const params = new URLSearchParams(location.hash.slice(1));
  return params.get('consultation');
}

function showSignIn(message) {
  $('sign-in').hidden = false;
  $('app').hidden = true;
  const fromLink = fragmentConsultation() || sessionStorage.getItem(CONSULTATION_KEY);
  if (fromLink && !$('consultation-id').value) $('consultation-id').value = fromLink;
  showError($('sign-in-error'), message || null);
  $('token').focus();
}

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  const id = $('consultation-id').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  if (id) sessionStorage.setItem(CONSULTATION_KEY, id);
  else sessionStorage.removeItem(CONSULTATION_KEY);
  $('token').value = '';
  start(token, id);
});

$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  app.client?.close();
  app.client = null;
  setConn('closed', 'Signed out');
  showSignIn();
});

async function start(token, id) {
  app.client?.close();
  const client = new ConsultClient({
    token: tokenSource({ url: tokenUrl(), initial: token }),
    autoAck: 'delivered',
  });
  app.client = client;
  app.id = id;
  app.messages.clear();
  app.entered = false;
  $('chat').replaceChildren();
  client.on('state', (s) => {
    if (client !== app.client) return;
    if (s.state === 'open') setConn('open', 'Connected');
    else if (s.state === 'connecting') setConn('connecting', 'Connecting…');
    else if (s.state === 'reconnecting') setConn('reconnecting', 'Reconnecting…');
  });
  client.on('auth_failed', (error) => {
    if (client !== app.client) return;
    sessionStorage.removeItem(TOKEN_KEY);
    setConn('closed', 'Signed out');
    showSignIn(`Your access code was not accepted (${error.code}). Ask your clinic for a new one.`);
  });
  client.on('message', ({ message }) => onMessage(message));
  client.on('status', (frame) => {
    if (frame.consultation_id === app.id) setStatus(frame.status);
  });
  client.on('joined', ({ consultation_id, result }) => {
    if (consultation_id !== app.id) return;
    app.consultation = result.consultation;
    app.staffMessagedFirst ||= result.consultation.staff_messaged_first;
    setStatus(result.consultation.status);
  });
  client.on('typing', (frame) => {
    if (frame.consultation_id !== app.id || frame.role === 'patient') return;
    clearTimeout(app.typingTimer);
    $('typing').textContent = frame.active ? 'Your provider is typing…' : '';
    if (frame.active) app.typingTimer = setTimeout(() => ($('typing').textContent = ''), 8000);
  });

  try {
    app.welcome = await client.connect();
  } catch (error) {
    if (client === app.client && error.code !== 'closed') {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn(`Your access code was not accepted (${error.code}).`);
    }
    return;
  }
  if (app.welcome.role !== 'patient') {
    client.close();
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn('This access code is for clinic staff; they use the console at /console/.');
    return;
  }
  if (!id) {
    // No appointment number given: open the patient's next appointment.
    const upcoming = await client.listConsultations().catch(() => []);
    if (client !== app.client) return;
    if (upcoming.length === 0) {
      client.close();
      showSignIn('You have no upcoming appointment with this access code.');
      return;
    }
    id = upcoming[0].id;
    app.id = id;
    sessionStorage.setItem(CONSULTATION_KEY, id);
  }
  try {
    await client.join(id, { since: 0 });
  } catch (error) {
    client.close();
    showSignIn(
      error.code === 'not_found' || error.code === 'forbidden'
        ? 'We could not find that appointment for this access code.'
        : `Could not open the appointment (${error.code}).`,
    );
    return;
  }
  $('sign-in').hidden = true;
  $('app').hidden = false;
  app.typing = typingNotifier(client, id);
  if (document.visibilityState !== 'visible') client.visibility(false).catch(() => {});
  scheduleReadAck();
}

// ---------------------------------------------------------------- status

function setStatus(status) {
  if (!status) return;
  if (app.consultation) app.consultation.status = status;
  const info = STATUS[status] || { pill: status, title: status, text: '' };
  $('status-card').dataset.status = status;
  $('status-pill').textContent = info.pill;
  $('status-title').textContent = info.title;
  $('status-text').textContent = info.text;
  const finished = status === 'ended' || status === 'cancelled';
  $('ready').hidden = !(status === 'scheduled' || status === 'waiting_for_patient');
  const mayEnter =
    !finished &&
    (status === 'patient_ready' ||
      status === 'in_progress' ||
      (app.staffMessagedFirst && (status === 'scheduled' || status === 'waiting_for_patient')));
  $('enter').hidden = !mayEnter || app.entered;
  $('entered').hidden = !app.entered || finished;
  $('entered').textContent =
    status === 'in_progress'
      ? 'You are in the consultation with your provider.'
      : 'You are in the consultation. Your provider will be with you shortly.';
  for (const el of $('composer').elements) el.disabled = finished;
}

$('ready').addEventListener('click', async () => {
  showError($('status-error'), null);
  $('ready').disabled = true;
  try {
    const result = await app.client.ready(app.id);
    setStatus(result.consultation.status);
    $('enter').hidden || $('enter').focus();
  } catch (error) {
    showError($('status-error'), error);
  } finally {
    $('ready').disabled = false;
  }
});

$('enter').addEventListener('click', async () => {
  showError($('status-error'), null);
  try {
    const result = await app.client.enter(app.id);
    app.entered = true;
    setStatus(result.consultation.status);
    $('composer-text').focus();
  } catch (error) {
    showError(
      $('status-error'),
      error.code === 'not_ready' ? 'Please tap “I’m Ready for My Appointment” first.' : error,
    );
  }
});

// ---------------------------------------------------------------- chat

function onMessage(message) {
  if (message.consultation_id !== app.id || app.messages.has(message.seq)) return;
  app.messages.set(message.seq, message);
  const mine = message.sender_role === 'patient';
  if (!mine) {
    $('typing').textContent = '';
    if (
      !app.staffMessagedFirst &&
      app.consultation &&
      (app.consultation.status === 'scheduled' || app.consultation.status === 'waiting_for_patient')
    ) {
      app.staffMessagedFirst = true;
      setStatus(app.consultation.status);
    }
  }
  const label = { quick: 'From your provider', alert: 'Alert from your clinic', system: 'Notice' }[
    message.kind
  ];
  const li = h(
    'li',
    { class: `msg ${mine ? 'out' : 'in'} kind-${message.kind}`, 'data-seq': message.seq },
    label ? h('span', { class: 'kind', text: label }) : null,
    h('p', { class: 'body', text: message.body }),
    h('span', {
      class: 'meta',
      text: `${mine ? 'You' : 'Clinic'} · ${new Date(message.sent_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`,
    }),
  );
  $('chat').append(li);
  $('chat-empty').hidden = true;
  li.scrollIntoView({ block: 'end' });
  if (message.kind === 'alert') showAlert(message);
  if (!mine) scheduleReadAck();
}

function showAlert(message) {
  $('alert-body').textContent = message.body;
  $('alert-banner').hidden = false;
}

$('alert-dismiss').addEventListener('click', () => {
  $('alert-banner').hidden = true;
});

/** Acknowledges the newest clinic message as read while the page is visible. */
function scheduleReadAck() {
  if (document.visibilityState !== 'visible' || app.readAckTimer) return;
  app.readAckTimer = setTimeout(() => {
    app.readAckTimer = null;
    const last = [...app.messages.values()].filter((m) => m.sender_role !== 'patient').at(-1);
    if (last && app.client) app.client.ack(app.id, last.seq, 'read').catch(() => {});
  }, 300);
}

document.addEventListener('visibilitychange', () => {
  const visible = document.visibilityState === 'visible';
  if (app.client?.state === 'open') app.client.visibility(visible).catch(() => {});
  if (visible) scheduleReadAck();
});

$('composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = $('composer-text').value.trim();
  if (!body) return;
  showError($('composer-error'), null);
  app.typing?.stop();
  try {
    await app.client.send(app.id, body);
    $('composer-text').value = '';
  } catch (error) {
    showError($('composer-error'), error);
  }
});
$('composer-text').addEventListener('input', () => app.typing?.input());
$('composer-text').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    $('composer').requestSubmit();
  }
});

// ---------------------------------------------------------------- settings

$('sms-consent').addEventListener('change', async (event) => {
  const consent = event.target.checked;
  $('sms-status').textContent = 'Saving…';
  try {
    await app.client.setSmsConsent(consent);
    $('sms-status').textContent = consent ? 'We may text you reminders.' : 'No text messages.';
  } catch (error) {
    event.target.checked = !consent;
    $('sms-status').textContent = `Not saved (${error.code}).`;
  }
});

// ---------------------------------------------------------------- boot

const savedToken = sessionStorage.getItem(TOKEN_KEY);
const savedId = fragmentConsultation() || sessionStorage.getItem(CONSULTATION_KEY);
if (savedToken) start(savedToken, savedId);
else showSignIn();

/** The host platform's token endpoint, when the page names one in
 * `<meta name="consult-token-url" content="...">`: the SDK then fetches a
 * fresh token from it before the current one expires. */
function tokenUrl() {
  return document.querySelector('meta[name="consult-token-url"]')?.content || null;
}
