// Provider console: the "Active and Waiting" list with Quick Messages, and
// the consultation view with chat, receipts, typing and "Alert Patient".
// Uses the SDK served by the hub at /sdk/consult.js.

import {
  ConsultClient,
  DashboardList,
  privacySpan,
  renderTemplate,
  tokenSource,
  typingNotifier,
} from '/sdk/consult.js';

const TOKEN_KEY = 'consult.console.token';
const STATUS_LABEL = {
  scheduled: 'Scheduled',
  waiting_for_patient: 'Waiting for Patient',
  patient_ready: 'Patient is Ready',
  in_progress: 'In Progress',
  ended: 'Ended',
  cancelled: 'Cancelled',
};
const ERROR_HINT = {
  privacy_violation: 'Not sent: remove names and health details.',
  channel_unavailable: 'Not sent: a ticked channel cannot reach the patient.',
  rate_limited: 'Not sent: too many alerts for now.',
  invalid_value: 'Not sent.',
  consultation_closed: 'This consultation has ended.',
  timeout: 'No answer from the hub; check the connection and try again.',
  disconnected: 'The connection dropped before an answer; try again.',
};

const $ = (id) => document.getElementById(id);

/** Creates an element; children are nodes or text (never parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function describeError(error) {
  const hint = ERROR_HINT[error.code];
  let message = error.message && error.message !== error.code ? error.message : '';
  if (message) message = message[0].toUpperCase() + message.slice(1);
  if (message && !/[.!?]$/.test(message)) message += '.';
  return [hint, message].filter(Boolean).join(' ') || `Failed (${error.code}).`;
}

function showError(el, error) {
  if (!error) {
    el.hidden = true;
    el.textContent = '';
    delete el.dataset.code;
    return;
  }
  el.textContent = typeof error === 'string' ? error : describeError(error);
  if (error.code) el.dataset.code = error.code;
  el.hidden = false;
}

function timeOf(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function waitingText(entry) {
  const since = entry.waiting_since || entry.scheduled_at;
  if (!since) return '';
  const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 60000));
  if (entry.status === 'in_progress') return 'In progress';
  return minutes < 1 ? 'Waiting under a minute' : `Waiting ${minutes} min`;
}

// ---------------------------------------------------------------- state

const app = {
  client: null,
  welcome: null,
  list: new DashboardList(),
  names: new Map(), // consultation_id -> patient name (kept after rows leave)
  templates: [],
  current: null, // the open consultation
  notifications: new Map(),
  typing: null,
};

// ---------------------------------------------------------------- sign-in

function showSignIn(message) {
  $('sign-in').hidden = false;
  $('app').hidden = true;
  $('sign-out').hidden = true;
  $('who').hidden = true;
  showError($('sign-in-error'), message || null);
  $('token').focus();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  app.client?.close();
  app.client = null;
  app.current = null;
  app.list = new DashboardList();
  app.notifications.clear();
  $('rows').replaceChildren();
  $('notifications').replaceChildren();
  closeConsultation();
  setConn('closed', 'Signed out');
  showSignIn();
}

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  start(token);
});
$('sign-out').addEventListener('click', signOut);

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
}

async function start(token) {
  app.client?.close();
  const client = new ConsultClient({ token: tokenSource({ url: tokenUrl(), initial: token }) });
  app.client = client;
  client.on('state', (s) => {
    if (client !== app.client) return;
    if (s.state === 'open') setConn('open', 'Connected');
    else if (s.state === 'connecting') setConn('connecting', 'Connecting…');
    else if (s.state === 'reconnecting')
      setConn('reconnecting', `Connection lost — reconnecting in ${Math.ceil(s.delayMs / 1000)} s`);
  });
  client.on('auth_failed', (error) => {
    if (client !== app.client) return;
    sessionStorage.removeItem(TOKEN_KEY);
    setConn('closed', 'Signed out');
    showSignIn(`Sign-in refused (${error.code}): paste a new token.`);
  });
  client.on('dashboard_snapshot', ({ entries }) => {
    app.list.applySnapshot(entries);
    renderRows();
  });
  client.on('dashboard', ({ entry }) => {
    if (app.list.apply(entry)) renderRows();
    if (app.current?.id === entry.consultation_id) updateCurrentStatus(entry.status);
  });
  client.on('notification', ({ notification }) => upsertNotification(notification));
  client.on('notifications', ({ notifications }) => notifications.forEach(upsertNotification));
  client.on('message', ({ message }) => onMessage(message));
  client.on('receipt', (frame) => onReceipt(frame));
  client.on('typing', (frame) => onTyping(frame));
  client.on('status', (frame) => {
    if (app.current?.id === frame.consultation_id) updateCurrentStatus(frame.status);
  });
  client.on('joined', ({ consultation_id, result }) => {
    if (app.current?.id === consultation_id) updateCurrentStatus(result.consultation.status);
  });

  let welcome;
  try {
    welcome = await client.connect();
  } catch (error) {
    if (client === app.client && error.code !== 'closed') {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn(`Sign-in refused (${error.code}): paste a new token.`);
    }
    return;
  }
  if (welcome.role === 'patient') {
    client.close();
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn('This token belongs to a patient. Patients use the patient app at /patient/.');
    return;
  }
  app.welcome = welcome;
  $('sign-in').hidden = true;
  $('app').hidden = false;
  $('sign-out').hidden = false;
  $('who').hidden = false;
  $('who').textContent = `${welcome.user} · ${welcome.role} · ${welcome.clinic}`;
  try {
    app.templates = await client.listTemplates();
  } catch {
    app.templates = [];
  }
  try {
    await client.watchDashboard();
  } catch (error) {
    setConn('closed', `Dashboard unavailable: ${describeError(error)}`);
  }
}

// ---------------------------------------------------------------- list

function badge(status) {
  return h('span', { class: `badge ${status}`, text: STATUS_LABEL[status] || status });
}

function renderRows() {
  const rows = $('rows');
  const entries = app.list.list();
  $('list-empty').hidden = entries.length > 0;
  const existing = new Map([...rows.children].map((li) => [li.dataset.id, li]));
  entries.forEach((entry, index) => {
    app.names.set(entry.consultation_id, entry.patient_name);
    let li = existing.get(entry.consultation_id);
    if (!li) li = buildRow(entry);
    existing.delete(entry.consultation_id);
    updateRow(li, entry);
    if (rows.children[index] !== li) rows.insertBefore(li, rows.children[index] || null);
  });
  for (const li of existing.values()) li.remove();
}

const QUICK_ICON =
  '<svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20"><path fill="currentColor" d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-4.5 3.6A.9.9 0 0 1 2 20.9V5a2 2 0 0 1 2-2Zm8.6 2.5-4.6 6h3.2l-1 4.5 4.8-6.2h-3.3l.9-4.3Z"/></svg>';

function buildRow(entry) {
  const id = entry.consultation_id;
  const quickButton = h('button', {
    type: 'button',
    class: 'icon-btn quick-toggle',
    'aria-expanded': 'false',
    'aria-controls': `quick-${id}`,
    title: 'Quick Message',
  });
  quickButton.innerHTML = QUICK_ICON; // static markup, no data
  quickButton.append(h('span', { class: 'visually-hidden quick-label' }));
  const enterButton = h('button', { type: 'button', class: 'btn primary enter', text: 'Enter' });
  const li = h(
    'li',
    { class: 'row', 'data-id': id },
    h(
      'div',
      { class: 'row-main' },
      h(
        'div',
        { class: 'row-text' },
        h('span', { class: 'name' }),
        h('span', { class: 'meta' }),
      ),
      h('span', { class: 'unread', hidden: true }),
      h('span', { class: 'badge-slot' }),
      h('div', { class: 'row-actions' }, quickButton, enterButton),
    ),
  );
  quickButton.addEventListener('click', () => toggleQuickMenu(li));
  enterButton.addEventListener('click', () => enterConsultation(id));
  return li;
}

function updateRow(li, entry) {
  li.dataset.status = entry.status;
  li.querySelector('.name').textContent = entry.patient_name;
  li.querySelector('.meta').textContent = waitingText(entry);
  li.querySelector('.quick-label').textContent = `Quick Message to ${entry.patient_name}`;
  li.querySelector('.quick-toggle').setAttribute('aria-label', `Quick Message to ${entry.patient_name}`);
  li.querySelector('.enter').setAttribute('aria-label', `Enter consultation with ${entry.patient_name}`);
  const slot = li.querySelector('.badge-slot');
  const current = slot.firstChild;
  if (!current || current.dataset.status !== entry.status) {
    const b = badge(entry.status);
    b.dataset.status = entry.status;
    slot.replaceChildren(b);
  }
  const unread = li.querySelector('.unread');
  unread.hidden = !entry.unread;
  unread.textContent = entry.unread ? `${entry.unread} unread` : '';
}

setInterval(() => {
  for (const li of $('rows').children) {
    const entry = app.list.get(li.dataset.id);
    if (entry) li.querySelector('.meta').textContent = waitingText(entry);
  }
}, 30000);

// ---------------------------------------------------------------- quick messages

function toggleQuickMenu(li) {
  const button = li.querySelector('.quick-toggle');
  const open = li.querySelector('.quick-menu');
  for (const other of document.querySelectorAll('.quick-menu')) {
    if (other !== open) closeQuickMenu(other.closest('li'));
  }
  if (open) {
    closeQuickMenu(li);
    return;
  }
  const id = li.dataset.id;
  const select = h(
    'select',
    { id: `quick-template-${id}`, class: 'quick-template' },
    app.templates.map((t) => h('option', { value: t.id, text: t.title })),
  );
  const fields = h('div', { class: 'quick-vars' });
  const preview = h('p', { class: 'quick-preview', 'aria-live': 'polite' });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const sendButton = h('button', { type: 'submit', class: 'btn primary', text: 'Send' });
  const form = h(
    'form',
    {
      class: 'quick-menu',
      id: `quick-${id}`,
      'aria-label': `Quick Message to ${app.list.get(id)?.patient_name || 'patient'}`,
    },
    app.templates.length
      ? [h('label', { for: select.id, text: 'Template' }), select, fields, preview, error, sendButton]
      : [h('p', { class: 'muted', text: 'No Quick Message templates.' })],
  );
  const values = () => {
    const v = {};
    for (const input of fields.querySelectorAll('input')) v[input.name] = input.value.trim();
    return v;
  };
  const refresh = () => {
    const template = app.templates.find((t) => t.id === select.value);
    if (!template) return;
    const previous = values();
    fields.replaceChildren(
      ...template.variables.map((name) => {
        const inputId = `quick-${id}-${name}`;
        const input = h('input', {
          id: inputId,
          name,
          required: true,
          maxlength: 40,
          inputmode: name === 'minutes' ? 'numeric' : undefined,
          value: previous[name] ?? (name === 'minutes' ? '10' : ''),
        });
        input.addEventListener('input', () => {
          preview.textContent = renderTemplate(template.body, values());
        });
        return h('div', { class: 'field' }, h('label', { for: inputId, text: name }), input);
      }),
    );
    preview.textContent = renderTemplate(template.body, values());
  };
  select.addEventListener('change', refresh);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    sendButton.disabled = true;
    try {
      const result = await app.client.quickMessage(id, select.value, values());
      for (const n of result.notifications || []) upsertNotification(n);
      closeQuickMenu(li);
      flash(li, 'Quick Message sent');
    } catch (e) {
      showError(error, e);
    } finally {
      sendButton.disabled = false;
    }
  });
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      closeQuickMenu(li);
      button.focus();
    }
  });
  li.append(form);
  button.setAttribute('aria-expanded', 'true');
  refresh();
  select.focus();
}

function closeQuickMenu(li) {
  li?.querySelector('.quick-menu')?.remove();
  li?.querySelector('.quick-toggle')?.setAttribute('aria-expanded', 'false');
}

function flash(li, text) {
  const note = h('p', { class: 'flash', role: 'status', text });
  li.append(note);
  setTimeout(() => note.remove(), 4000);
}

// ---------------------------------------------------------------- consultation

async function enterConsultation(id) {
  const client = app.client;
  if (app.current && app.current.id !== id) {
    const previous = app.current.id;
    app.typing?.stop();
    client.leave(previous).catch(() => {});
  }
  app.current = {
    id,
    name: app.list.get(id)?.patient_name || app.names.get(id) || 'Patient',
    status: app.list.get(id)?.status,
    messages: new Map(),
    delivered: 0,
    read: 0,
    typingTimer: null,
  };
  $('no-consultation').hidden = true;
  $('consultation-view').hidden = false;
  $('consultation-view').dataset.joined = 'false';
  $('c-title').textContent = app.current.name;
  $('chat').replaceChildren();
  $('typing').textContent = '';
  closeAlertForm();
  showError($('composer-error'), null);
  for (const li of $('rows').children) li.classList.toggle('selected', li.dataset.id === id);
  updateCurrentStatus(app.current.status);
  try {
    const entered = await client.enter(id);
    updateCurrentStatus(entered.consultation.status);
    await client.join(id, { since: 0 });
    if (app.current?.id === id) $('consultation-view').dataset.joined = 'true';
    app.typing = typingNotifier(client, id);
    const notifications = await client.listNotifications(id);
    for (const n of notifications) upsertNotification(n);
  } catch (error) {
    showError($('composer-error'), error);
  }
  $('composer-text').focus();
}

function closeConsultation() {
  $('no-consultation').hidden = false;
  $('consultation-view').hidden = true;
}

function updateCurrentStatus(status) {
  if (!app.current || !status) return;
  app.current.status = status;
  const b = $('c-badge');
  b.className = `badge ${status}`;
  b.textContent = STATUS_LABEL[status] || status;
  const finished = status === 'ended' || status === 'cancelled';
  $('end').disabled = status !== 'in_progress';
  $('alert-open').disabled = finished;
  for (const el of $('composer').elements) el.disabled = finished;
}

function onMessage(message) {
  const current = app.current;
  if (!current || message.consultation_id !== current.id) return;
  if (current.messages.has(message.seq)) return;
  current.messages.set(message.seq, message);
  const mine = message.sender_role !== 'patient';
  const kindLabel = { quick: 'Quick Message', alert: 'Alert', system: 'Notice' }[message.kind];
  const li = h(
    'li',
    {
      class: `msg ${mine ? 'out' : 'in'} kind-${message.kind}`,
      'data-seq': message.seq,
    },
    kindLabel ? h('span', { class: 'kind', text: kindLabel }) : null,
    h('p', { class: 'body', text: message.body }),
    h(
      'span',
      { class: 'meta' },
      h('span', { text: `${mine ? (message.sender === app.welcome?.user ? 'You' : message.sender) : current.name} · ${timeOf(message.sent_at)}` }),
      mine ? h('span', { class: 'ticks', 'aria-label': 'Sent', title: 'Sent', text: '✓' }) : null,
    ),
  );
  $('chat').append(li);
  li.scrollIntoView({ block: 'end' });
  if (mine) updateTicks();
  else {
    $('typing').textContent = '';
    if (document.visibilityState === 'visible') {
      app.client.ack(current.id, message.seq, 'read').catch(() => {});
    }
  }
}

function onReceipt(frame) {
  const current = app.current;
  if (!current || frame.consultation_id !== current.id || frame.role !== 'patient') return;
  if (frame.receipt === 'read') current.read = Math.max(current.read, frame.seq);
  current.delivered = Math.max(current.delivered, frame.seq);
  updateTicks();
}

function updateTicks() {
  const current = app.current;
  for (const li of $('chat').querySelectorAll('.msg.out')) {
    const seq = Number(li.dataset.seq);
    const ticks = li.querySelector('.ticks');
    let state = 'sent';
    if (seq <= current.read) state = 'read';
    else if (seq <= current.delivered) state = 'delivered';
    if (ticks.dataset.state === state) continue;
    ticks.dataset.state = state;
    ticks.textContent = state === 'sent' ? '✓' : '✓✓';
    const label = { sent: 'Sent', delivered: 'Delivered', read: 'Read' }[state];
    ticks.setAttribute('aria-label', label);
    ticks.title = label;
  }
}

function onTyping(frame) {
  const current = app.current;
  if (!current || frame.consultation_id !== current.id || frame.role !== 'patient') return;
  clearTimeout(current.typingTimer);
  $('typing').textContent = frame.active ? `${current.name} is typing…` : '';
  if (frame.active) {
    current.typingTimer = setTimeout(() => {
      $('typing').textContent = '';
    }, 8000);
  }
}

document.addEventListener('visibilitychange', () => {
  const current = app.current;
  if (document.visibilityState !== 'visible' || !current) return;
  const last = [...current.messages.values()].filter((m) => m.sender_role === 'patient').at(-1);
  if (last) app.client.ack(current.id, last.seq, 'read').catch(() => {});
});

$('composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('composer-text');
  const body = text.value.trim();
  if (!body || !app.current) return;
  showError($('composer-error'), null);
  app.typing?.stop();
  try {
    await app.client.send(app.current.id, body);
    text.value = '';
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

$('end').addEventListener('click', async () => {
  if (!app.current) return;
  try {
    const result = await app.client.end(app.current.id);
    updateCurrentStatus(result.consultation.status);
  } catch (error) {
    showError($('composer-error'), error);
  }
});

// ---------------------------------------------------------------- alert

function openAlertForm() {
  $('alert-form').hidden = false;
  $('alert-open').setAttribute('aria-expanded', 'true');
  showError($('alert-error'), null);
  updateAlertCount();
  $('alert-text').focus();
}

function closeAlertForm() {
  $('alert-form').hidden = true;
  $('alert-open').setAttribute('aria-expanded', 'false');
  showError($('alert-error'), null);
}

/** Selects the refused span in the alert box and quotes the text with the
 * span marked under the error. */
function highlightRefused(error) {
  const box = $('alert-text');
  const value = box.value;
  const lead = value.length - value.trimStart().length;
  const span = privacySpan(error, value.trim());
  if (!span) return;
  const start = lead + span.start;
  const end = lead + span.end;
  box.setSelectionRange(start, end);
  $('alert-error').append(
    h('span', { class: 'refused-text' },
      value.slice(0, start),
      h('mark', { class: 'refused', text: value.slice(start, end) }),
      value.slice(end)),
  );
}

function updateAlertCount() {
  const n = $('alert-text').value.length;
  $('alert-count').textContent = `${n} / 160 characters`;
}

$('alert-open').addEventListener('click', () => {
  if ($('alert-form').hidden) openAlertForm();
  else closeAlertForm();
});
$('alert-cancel').addEventListener('click', () => {
  closeAlertForm();
  $('alert-open').focus();
});
$('alert-text').addEventListener('input', updateAlertCount);
$('alert-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!app.current) return;
  const channels = [];
  if ($('alert-push').checked) channels.push('push');
  if ($('alert-sms').checked) channels.push('sms');
  showError($('alert-error'), null);
  if (!channels.length) {
    showError($('alert-error'), 'Tick Push Notifications, SMS, or both.');
    return;
  }
  $('alert-send').disabled = true;
  try {
    const sent = $('alert-text').value.trim();
    const result = await app.client.alert(app.current.id, sent, channels);
    for (const n of result.notifications || []) upsertNotification(n);
    closeAlertForm();
    $('alert-open').focus();
  } catch (error) {
    showError($('alert-error'), error);
    $('alert-text').focus();
    highlightRefused(error);
  } finally {
    $('alert-send').disabled = false;
  }
});

// ---------------------------------------------------------------- notifications

function upsertNotification(n) {
  const known = app.notifications.get(n.id);
  if (known && Date.parse(known.updated_at) > Date.parse(n.updated_at)) return;
  app.notifications.set(n.id, n);
  renderNotifications();
}

function renderNotifications() {
  const all = [...app.notifications.values()].sort((a, b) =>
    a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : 0,
  );
  $('notifications-empty').hidden = all.length > 0;
  $('notifications-table').hidden = all.length === 0;
  $('notifications').replaceChildren(
    ...all.slice(0, 50).map((n) =>
      h(
        'tr',
        { 'data-id': n.id, 'data-status': n.status },
        h('td', { text: app.names.get(n.consultation_id) || n.recipient }),
        h('td', { text: n.channel === 'sms' ? 'SMS' : 'Push' }),
        h('td', { text: n.reason }),
        h(
          'td',
          {},
          h('span', { class: `pill ${n.status}`, text: n.status }),
          n.error ? h('span', { class: 'muted small', text: ` ${n.error}` }) : null,
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------- boot

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showSignIn();

/** The host platform's token endpoint, when the page names one in
 * `<meta name="consult-token-url" content="...">`: the SDK then fetches a
 * fresh token from it before the current one expires. */
function tokenUrl() {
  return document.querySelector('meta[name="consult-token-url"]')?.content || null;
}
