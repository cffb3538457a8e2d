// consult-hub JavaScript SDK: a dependency-free ES module for browsers,
// React Native and Node.js (>= 22, or 20 with --experimental-websocket).
//
// It speaks the hub's WebSocket protocol (docs/protocol.md):
//   - `hello` carries the token; the URL never does;
//   - commands get an `id` and a promise settled by the matching `ok`/`error`
//     (or a timeout);
//   - events (`message`, `receipt`, `typing`, `presence`, `status`,
//     `dashboard`, `notification`) reach callbacks (`client.on(type, fn)`) or
//     an async iterator (`for await (const e of client.events())`);
//   - after a drop (1001 going away, 1006 abnormal, and every other code but
//     4001) it reconnects with jittered exponential backoff, says `hello`
//     again, re-joins each room with `since` = the last `seq` it delivered
//     (dropping any duplicate), re-watches the dashboard, restores the
//     visibility it last reported, and re-sends unanswered `send`,
//     `quick_message` and `alert` commands with their original
//     `client_msg_id` (the hub makes those idempotent).
//   - 4001 (bad, expired or revoked token) is final: `auth_failed` is
//     emitted and the client stays closed until `connect()` is called again
//     (with a fresh token via `setToken`).
//   - when `token` is a function, it is asked for a fresh token some time
//     before the connection's token expires (the `welcome`'s `expires_at`)
//     and sends it in a `refresh`, so the hub never closes the connection for
//     expiry (4005). A 4005 or 4006 (revoked) close is followed by a
//     reconnect with a fresh token from the function.
//
// The web console and patient app (clients/web) load a copy of this file
// from /sdk/consult.js; `npm run build` in clients/js refreshes that copy.

/** Protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

/** Statuses shown on the "Active and Waiting" list. */
export const ACTIVE_STATUSES = Object.freeze([
  'waiting_for_patient',
  'patient_ready',
  'in_progress',
]);

/** Close codes after which the client does not reconnect by itself. */
const FINAL_CLOSE_CODES = new Set([4001]);

/** Commands that are safe to re-send after a reconnect (idempotent by client_msg_id). */
const RETRYABLE = new Set(['send', 'quick_message', 'alert']);

/** Server frames delivered as events, by `type`. */
const EVENT_TYPES = new Set([
  'message',
  'receipt',
  'typing',
  'presence',
  'status',
  'dashboard',
  'notification',
  'notifications',
]);

/** A refusal from the hub (`code` is the protocol's error code) or from the SDK
 * itself (`timeout`, `disconnected`, `closed`, `not_connected`). */
export class ConsultError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = 'ConsultError';
    /** Machine-readable reason. */
    this.code = code;
    /** The command id, when the refusal answered a command. */
    this.id = details.id;
    /** The command type, when known. */
    this.command = details.command;
    /** For `privacy_violation`: the refused span of the text sent, in
     * Unicode code points (characters), end exclusive, as the hub reports
     * it; `privacySpan` turns it into string indices. */
    this.span = code === 'privacy_violation' ? parseCharSpan(message) : undefined;
  }
}

function parseCharSpan(message) {
  const match = /at characters (\d+)\.\.(\d+)/.exec(message || '');
  if (!match) return undefined;
  return { start: Number(match[1]), end: Number(match[2]) };
}

/** The JavaScript string index (UTF-16 code units) of code point `n` of
 * `text` (its length when `n` is past the end). */
export function codePointToIndex(text, n) {
  let index = 0;
  for (let seen = 0; seen < n && index < text.length; seen += 1) {
    const unit = text.charCodeAt(index);
    index += unit >= 0xd800 && unit <= 0xdbff && index + 1 < text.length ? 2 : 1;
  }
  return index;
}

/** The span a `privacy_violation` refused, as indices into `text` (the text
 * that was sent) usable with `slice` or `setSelectionRange`:
 * `{ start, end }`, or `null` for other errors. The hub counts code points;
 * this converts them to UTF-16 indices. */
export function privacySpan(error, text) {
  const span = error && error.code === 'privacy_violation' ? error.span : undefined;
  if (!span) return null;
  return { start: codePointToIndex(text, span.start), end: codePointToIndex(text, span.end) };
}

let idCounter = 0;

/** A fresh idempotency key for `send`, `quick_message` and `alert`. */
export function newClientMsgId(prefix = 'm') {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return `${prefix}-${c.randomUUID()}`;
  idCounter += 1;
  const rand = Math.random().toString(36).slice(2, 12);
  return `${prefix}-${Date.now().toString(36)}-${idCounter.toString(36)}-${rand}`;
}

/** `ws(s)://<host>/v1/ws` for a page served by the hub (browsers only). */
export function defaultUrl(loc = globalThis.location) {
  if (!loc) throw new Error('defaultUrl needs a location; pass `url` instead');
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/v1/ws`;
}

/** The `{variables}` a template body uses, in order of first use (as the hub computes them). */
export function templateVariables(body) {
  const names = [];
  const re = /\{([A-Za-z0-9_]{1,32})\}/g;
  let m;
  while ((m = re.exec(body)) !== null) {
    if (!names.includes(m[1])) names.push(m[1]);
  }
  return names;
}

/** A preview of a template with `variables` filled in; unknown ones stay as `{name}`. */
/**
 * A `token` function for ConsultClient: each call fetches a fresh token from
 * the host platform's endpoint `url` (sent with the page's cookies; it must
 * answer `{"token": "..."}`), so the client can refresh before expiry and
 * reconnect after it. Without `url` it returns `initial` (a pasted token),
 * which is used until it expires.
 */
export function tokenSource({ url, initial, fetch: fetchImpl = globalThis.fetch } = {}) {
  if (!url) return async () => initial;
  return async () => {
    const res = await fetchImpl(url, { credentials: 'include', cache: 'no-store' });
    if (!res.ok) throw new ConsultError('invalid_token', `token endpoint answered ${res.status}`);
    const body = await res.json();
    if (!body || typeof body.token !== 'string') {
      throw new ConsultError('invalid_token', 'token endpoint gave no token');
    }
    return body.token;
  };
}

export function renderTemplate(body, variables = {}) {
  return body.replace(/\{([A-Za-z0-9_]{1,32})\}/g, (whole, name) => {
    const value = variables[name];
    return value === undefined || value === null || value === '' ? whole : String(value);
  });
}

/**
 * The "Active and Waiting" list, kept by the rules of the dashboard feed:
 * per consultation the row with the highest `rev` wins, and a row whose status
 * is not active or waiting leaves the list.
 */
export class DashboardList {
  constructor() {
    this.rows = new Map();
    this.revs = new Map();
  }

  /** Replaces the list with a `dashboard_snapshot`'s entries. */
  applySnapshot(entries) {
    this.rows.clear();
    for (const entry of entries) {
      const seen = this.revs.get(entry.consultation_id);
      if (seen !== undefined && seen > entry.rev) continue;
      this.revs.set(entry.consultation_id, entry.rev);
      this.rows.set(entry.consultation_id, entry);
    }
    return this.list();
  }

  /** Applies one `dashboard` delta; returns false when it was stale. */
  apply(entry) {
    const seen = this.revs.get(entry.consultation_id);
    if (seen !== undefined && seen > entry.rev) return false;
    this.revs.set(entry.consultation_id, entry.rev);
    if (ACTIVE_STATUSES.includes(entry.status)) this.rows.set(entry.consultation_id, entry);
    else this.rows.delete(entry.consultation_id);
    return true;
  }

  get(consultationId) {
    return this.rows.get(consultationId);
  }

  /** Rows, longest waiting first (by `waiting_since`, else `scheduled_at`). */
  list() {
    const key = (e) => e.waiting_since || e.scheduled_at || '';
    return [...this.rows.values()].sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      if (ka < kb) return -1;
      if (ka > kb) return 1;
      return a.consultation_id < b.consultation_id ? -1 : 1;
    });
  }
}

/** Minimal event emitter (React Native has no EventTarget everywhere). */
class Emitter {
  constructor() {
    this.handlers = new Map();
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this.handlers.get(type)?.delete(fn);
  }

  emit(type, payload) {
    for (const key of [type, '*']) {
      const set = this.handlers.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          fn(payload, type);
        } catch (error) {
          // A failing handler must not break the connection.
          if (globalThis.console) console.error('consult-hub SDK: event handler failed', error);
        }
      }
    }
  }
}

/**
 * A connection to the hub.
 *
 * ```js
 * const client = new ConsultClient({ url: 'wss://hub.example/v1/ws', token });
 * client.on('message', ({ message }) => show(message));
 * await client.connect();
 * await client.join(consultationId, { since: 0 });
 * await client.send(consultationId, 'Hello');
 * ```
 *
 * Options:
 * - `url` (required outside browsers): `ws(s)://host/v1/ws`;
 * - `token`: a JWT string, or a (possibly async) function returning one, called
 *   for every `hello`;
 * - `WebSocket`: a WebSocket constructor (default: the global one);
 * - `requestTimeoutMs` (10000), `handshakeTimeoutMs` (10000);
 * - `reconnect`: `false`, or `{ initialDelayMs: 500, maxDelayMs: 30000,
 *   goingAwayJitterMs: 250, stableAfterMs: 5000, delayMs(attempt, code) }`;
 * - `refreshBeforeMs` (60000): how long before the connection's token expires
 *   a fresh token from the `token` function is sent in a `refresh` (at most
 *   half the time left); `false` never refreshes in-band;
 * - `autoAck`: `'delivered'` to acknowledge others' messages as delivered when
 *   they arrive (coalesced per room), or `false` (default).
 */
export class ConsultClient {
  constructor(options = {}) {
    this.url = options.url || defaultUrl();
    this.token = options.token;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') {
      throw new Error('no WebSocket implementation: pass the `WebSocket` option');
    }
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10000;
    this.reconnectOptions =
      options.reconnect === false
        ? null
        : {
            initialDelayMs: 500,
            maxDelayMs: 30000,
            goingAwayJitterMs: 250,
            stableAfterMs: 5000,
            ...(options.reconnect || {}),
          };
    this.autoAck = options.autoAck || false;
    this.refreshBeforeMs = options.refreshBeforeMs ?? 60000;

    this.emitter = new Emitter();
    this._state = 'idle';
    this._ws = null;
    this._welcome = null;
    this._nextId = 0;
    this._pending = new Map(); // id -> entry (sent, waiting for ok/error)
    this._queue = []; // entries waiting for the connection
    this._rooms = new Map(); // consultation_id -> { lastSeq, baseSeq }
    this._dashboard = null; // { provider_id? } while watching
    this._foreground = null; // last reported visibility
    this._attempt = 0;
    this._everConnected = false;
    this._closedByUser = false;
    this._authError = null;
    this._timers = { reconnect: null, handshake: null, stable: null, refresh: null };
    this._expiry = null; // { atMs (our clock), skewMs } of the current token
    this._connectWaiters = [];
    this._ackTimers = new Map();
  }

  // ------------------------------------------------------------------ events

  /** Subscribes to an event (`'*'` for all); returns an unsubscribe function.
   *
   * Events: `state` ({state, code?, reason?, delayMs?, attempt?}), `welcome`,
   * `message`, `receipt`, `typing`, `presence`, `status`, `dashboard`,
   * `notification`, `notifications` (the hub's frames), `dashboard_snapshot` ({entries,
   * resumed}), `joined` ({consultation_id, result, resumed}), `room_reset`
   * ({consultation_id}), `error` (an `error` frame answering no command),
   * `auth_failed` (a ConsultError), `token_refreshed` ({expires_at}),
   * `token_refresh_failed` (a ConsultError; retried until the token runs
   * out). */
  on(type, fn) {
    return this.emitter.on(type, fn);
  }

  off(type, fn) {
    this.emitter.off(type, fn);
  }

  once(type, fn) {
    const off = this.on(type, (payload, t) => {
      off();
      fn(payload, t);
    });
    return off;
  }

  /** The next event of `type` (optionally matching `predicate`), as a promise. */
  waitFor(type, predicate = () => true, timeoutMs = this.requestTimeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new ConsultError('timeout', `no ${type} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.on(type, (payload) => {
        if (!predicate(payload)) return;
        clearTimeout(timer);
        off();
        resolve(payload);
      });
    });
  }

  /** An async iterator over events (`{type, data}`), optionally only `types`.
   * It ends when the client closes for good, or when the loop breaks. */
  events(types) {
    const wanted = types ? new Set(types) : null;
    const buffer = [];
    let waiting = null;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      offAll();
      if (waiting) {
        waiting({ value: undefined, done: true });
        waiting = null;
      }
    };
    const offAll = this.on('*', (data, type) => {
      if (type === 'state' && data.state === 'closed') {
        if (!wanted || wanted.has('state')) buffer.push({ type, data });
        if (waiting) {
          const next = buffer.shift();
          waiting(next ? { value: next, done: false } : { value: undefined, done: true });
          waiting = null;
        }
        done = true;
        offAll();
        return;
      }
      if (wanted && !wanted.has(type)) return;
      if (waiting) {
        waiting({ value: { type, data }, done: false });
        waiting = null;
      } else buffer.push({ type, data });
    });
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      next() {
        if (buffer.length) return Promise.resolve({ value: buffer.shift(), done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          waiting = resolve;
        });
      },
      return() {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  // ------------------------------------------------------------------ state

  /** `idle`, `connecting`, `open`, `reconnecting` or `closed`. */
  get state() {
    return this._state;
  }

  /** The last `welcome` frame (user, role, clinic, ...), or null. */
  get welcome() {
    return this._welcome;
  }

  /** Consultations this client has joined (and re-joins after reconnects). */
  get joinedRooms() {
    return [...this._rooms.keys()];
  }

  /** Highest `seq` delivered as a `message` event for a joined room. */
  lastSeq(consultationId) {
    return this._rooms.get(consultationId)?.lastSeq ?? null;
  }

  /** Sends `refresh` with `token` (or a fresh one from the `token` function)
   * for the same user, clinic and role; resolves with the new `expires_at`.
   * Rejects with `invalid_token`, `token_expired` or `token_revoked`, leaving
   * the connection on its old token. */
  async refreshToken(token) {
    const fresh = token ?? (typeof this.token === 'function' ? await this.token() : this.token);
    const previousMs = this._expiry?.atMs ?? null;
    const result = await this._command('refresh', { token: fresh || '' }, { direct: true });
    this._planRefresh(result.expires_at);
    if (previousMs !== null && this._expiry && this._expiry.atMs <= previousMs + 500) {
      // The token function gave no later token: refreshing again cannot
      // help; the hub closes at expiry (4005) and the client reconnects.
      clearTimeout(this._timers.refresh);
      this._timers.refresh = null;
    }
    this.emitter.emit('token_refreshed', { expires_at: result.expires_at });
    return result.expires_at;
  }

  /** Plans the next in-band refresh before `expiresAt` (the hub's clock). */
  _planRefresh(expiresAt) {
    clearTimeout(this._timers.refresh);
    this._timers.refresh = null;
    if (!expiresAt || !this._expiry) return;
    const leftMs = Date.parse(expiresAt) - (Date.now() + this._expiry.skewMs);
    this._expiry.atMs = Date.now() + leftMs;
    if (typeof this.token !== 'function' || this.refreshBeforeMs === false) return;
    const delay = Math.max(0, leftMs - Math.min(this.refreshBeforeMs, leftMs / 2));
    this._timers.refresh = setTimeout(() => this._autoRefresh(), delay);
  }

  async _autoRefresh() {
    this._timers.refresh = null;
    const ws = this._ws;
    try {
      await this.refreshToken();
    } catch (error) {
      if (this._ws !== ws || this._closedByUser || !this._expiry) return;
      // Try again after half the time left; if the token runs out, the hub
      // closes with 4005 and the client reconnects with a fresh token.
      const leftMs = this._expiry.atMs - Date.now();
      this.emitter.emit('token_refresh_failed', error);
      this._timers.refresh = setTimeout(() => this._autoRefresh(), Math.max(250, leftMs / 2));
    }
  }

  /** Sets the token used by the next `hello` (after a 4001, call connect()). */
  setToken(token) {
    this.token = token;
  }

  _setState(state, detail = {}) {
    this._state = state;
    this.emitter.emit('state', { state, ...detail });
  }

  // ------------------------------------------------------------------ connection

  /** Connects and says `hello`; resolves with the `welcome` frame. Rejects on
   * a refused token (4001) or `close()`. Network failures are retried. */
  connect() {
    if (this._state === 'open') return Promise.resolve(this._welcome);
    const promise = new Promise((resolve, reject) => {
      this._connectWaiters.push({ resolve, reject });
    });
    if (this._state === 'idle' || this._state === 'closed') {
      this._closedByUser = false;
      this._authError = null;
      this._attempt = 0;
      this._openSocket();
    }
    return promise;
  }

  /** Closes for good (no reconnect); pending commands fail with `closed`. */
  close(code = 1000, reason = 'bye') {
    this._closedByUser = true;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
    this._failAll(new ConsultError('closed', 'the client was closed'));
    this._settleConnect(new ConsultError('closed', 'the client was closed'));
    if (this._state !== 'closed') this._setState('closed', { code, reason });
  }

  /** Skips the rest of the backoff wait and reconnects now (e.g. when the
   * device's network comes back or the app returns to the foreground). */
  reconnectNow() {
    if (this._state !== 'reconnecting' || !this._timers.reconnect) return false;
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    this._openSocket();
    return true;
  }

  _clearTimers() {
    for (const key of Object.keys(this._timers)) {
      clearTimeout(this._timers[key]);
      this._timers[key] = null;
    }
    for (const timer of this._ackTimers.values()) clearTimeout(timer);
    this._ackTimers.clear();
  }

  _settleConnect(error) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) {
      if (error) w.reject(error);
      else w.resolve(this._welcome);
    }
  }

  _openSocket() {
    this._setState('connecting', { attempt: this._attempt });
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (error) {
      this._onClose(null, 1006, String(error && error.message));
      return;
    }
    this._ws = ws;
    this._timers.handshake = setTimeout(() => {
      if (this._ws !== ws) return;
      // No welcome in time: drop this socket and try again.
      this._ws = null;
      try {
        ws.close();
      } catch {
        // ignore
      }
      this._onClose(ws, 4000, 'no welcome in time');
    }, this.handshakeTimeoutMs);
    ws.onopen = async () => {
      opened = true;
      if (this._ws !== ws) return;
      let token;
      try {
        token = typeof this.token === 'function' ? await this.token() : this.token;
      } catch (error) {
        this._authError = new ConsultError('invalid_token', `token provider failed: ${error}`);
        this._ws = null;
        ws.close();
        this._onClose(ws, 4001, 'token provider failed');
        return;
      }
      if (this._ws !== ws) return;
      this._rawSend(ws, { type: 'hello', token: token || '' });
    };
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      this._onText(typeof event.data === 'string' ? event.data : String(event.data));
    };
    let opened = false;
    ws.onerror = () => {
      // Browsers follow an error with a close event, but some runtimes (Node's
      // built-in WebSocket during a failed handshake) do not: count the socket
      // as closed (1006) if no close event comes soon.
      setTimeout(
        () => {
          if (this._ws !== ws) return;
          this._ws = null;
          try {
            ws.close();
          } catch {
            // ignore
          }
          this._onClose(ws, 1006, 'socket error');
        },
        opened ? 1000 : 0,
      );
    };
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onClose(ws, event.code, event.reason);
    };
  }

  _rawSend(ws, frame) {
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  _onClose(_ws, code, reason) {
    clearTimeout(this._timers.handshake);
    clearTimeout(this._timers.stable);
    clearTimeout(this._timers.refresh);
    this._timers.handshake = null;
    this._timers.stable = null;
    this._timers.refresh = null;
    this._expiry = null;
    if (this._closedByUser) return;
    const final = FINAL_CLOSE_CODES.has(code) || !this.reconnectOptions;
    // Commands in flight: idempotent ones wait for the next connection.
    for (const entry of this._pending.values()) {
      if (!final && RETRYABLE.has(entry.frame.type)) this._queue.push(entry);
      else {
        clearTimeout(entry.timer);
        entry.reject(
          new ConsultError('disconnected', `connection lost (${code}) before an answer`, {
            id: entry.frame.id,
            command: entry.frame.type,
          }),
        );
      }
    }
    this._pending.clear();
    if (final) {
      const error =
        code === 4001
          ? this._authError || new ConsultError('invalid_token', reason || 'authentication failed')
          : new ConsultError('disconnected', `connection closed (${code})`);
      this._failAll(error);
      this._settleConnect(error);
      this._setState('closed', { code, reason, error });
      if (code === 4001) this.emitter.emit('auth_failed', error);
      return;
    }
    const delayMs = this._backoff(code);
    this._setState('reconnecting', { code, reason, delayMs, attempt: this._attempt });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (!this._closedByUser) this._openSocket();
    }, delayMs);
  }

  _backoff(code) {
    const o = this.reconnectOptions;
    const attempt = this._attempt;
    this._attempt += 1;
    if (typeof o.delayMs === 'function') return Math.max(0, o.delayMs(attempt, code));
    if (code === 1001 && attempt === 0) {
      // Going away: another node is ready; spread the herd a little.
      return Math.random() * o.goingAwayJitterMs;
    }
    const base = Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** attempt);
    return base / 2 + Math.random() * (base / 2);
  }

  _failAll(error) {
    for (const entry of this._pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
    this._pending.clear();
    const queued = this._queue;
    this._queue = [];
    for (const entry of queued) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  }

  _onText(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    switch (frame.type) {
      case 'welcome':
        this._onWelcome(frame);
        return;
      case 'ok':
      case 'error': {
        const entry = frame.id !== undefined ? this._pending.get(frame.id) : undefined;
        if (entry) {
          this._pending.delete(frame.id);
          clearTimeout(entry.timer);
          if (frame.type === 'ok') entry.resolve(frame.result ?? null);
          else
            entry.reject(
              new ConsultError(frame.code, frame.message, { id: frame.id, command: entry.frame.type }),
            );
        } else if (frame.type === 'error') {
          if (
            frame.code === 'invalid_token' ||
            frame.code === 'token_expired' ||
            frame.code === 'token_revoked'
          ) {
            this._authError = new ConsultError(frame.code, frame.message);
          }
          this.emitter.emit('error', frame);
        }
        return;
      }
      case 'message':
        this._onMessage(frame);
        return;
      default:
        if (EVENT_TYPES.has(frame.type)) this.emitter.emit(frame.type, frame);
    }
  }

  _onMessage(frame) {
    const message = frame.message;
    if (!message) return;
    const room = this._rooms.get(message.consultation_id);
    if (room) {
      if (room.lastSeq !== null && message.seq <= room.lastSeq) return; // duplicate
      room.lastSeq = message.seq;
    }
    this.emitter.emit('message', frame);
    if (
      this.autoAck === 'delivered' &&
      room &&
      this._welcome &&
      message.sender !== this._welcome.user
    ) {
      this._scheduleAck(message.consultation_id, message.seq);
    }
  }

  _scheduleAck(consultationId, seq) {
    const room = this._rooms.get(consultationId);
    if (!room) return;
    room.ackSeq = Math.max(room.ackSeq || 0, seq);
    if (this._ackTimers.has(consultationId)) return;
    this._ackTimers.set(
      consultationId,
      setTimeout(() => {
        this._ackTimers.delete(consultationId);
        const r = this._rooms.get(consultationId);
        if (!r || !r.ackSeq) return;
        const upTo = r.ackSeq;
        r.ackSeq = 0;
        this.ack(consultationId, upTo, 'delivered').catch(() => {});
      }, 0),
    );
  }

  async _onWelcome(frame) {
    clearTimeout(this._timers.handshake);
    this._timers.handshake = null;
    this._welcome = frame;
    this._expiry = { atMs: null, skewMs: Date.parse(frame.server_time) - Date.now() || 0 };
    this._planRefresh(frame.expires_at);
    const ws = this._ws;
    const resumed = this._everConnected;
    this._everConnected = true;
    const stableAfter = this.reconnectOptions?.stableAfterMs ?? 0;
    this._timers.stable = setTimeout(() => {
      this._attempt = 0;
    }, stableAfter);
    this.emitter.emit('welcome', frame);
    if (resumed) {
      try {
        await this._resume();
      } catch {
        // A failed resume step is reported through its own events; the
        // connection itself may already be gone (then _onClose handles it).
      }
      if (this._ws !== ws) return;
    }
    this._setState('open', { resumed });
    this._flushQueue();
    this._settleConnect(null);
  }

  async _resume() {
    const steps = [];
    for (const [consultationId, room] of this._rooms) {
      steps.push(this._rejoin(consultationId, room));
    }
    if (this._dashboard) {
      steps.push(
        this._command('watch_dashboard', { ...this._dashboard }, { direct: true }).then((result) =>
          this.emitter.emit('dashboard_snapshot', { entries: result.entries, resumed: true }),
        ),
      );
    }
    if (this._foreground === false) {
      steps.push(this._command('visibility', { foreground: false }, { direct: true }));
    }
    await Promise.allSettled(steps);
  }

  async _rejoin(consultationId, room) {
    const since = Math.max(room.lastSeq ?? 0, room.baseSeq ?? 0);
    if (room.lastSeq === null || room.lastSeq < since) room.lastSeq = since;
    let result;
    try {
      result = await this._command(
        'join',
        { consultation_id: consultationId, since },
        { direct: true },
      );
    } catch (error) {
      if (error.code !== 'invalid_value') {
        this.emitter.emit('error', {
          type: 'error',
          code: error.code,
          message: `re-joining ${consultationId} failed: ${error.message}`,
          consultation_id: consultationId,
        });
        if (error.code === 'not_found' || error.code === 'forbidden') this._rooms.delete(consultationId);
        throw error;
      }
      // The hub is behind us (restored database): start over from 0.
      room.lastSeq = 0;
      room.baseSeq = 0;
      this.emitter.emit('room_reset', { consultation_id: consultationId });
      result = await this._command(
        'join',
        { consultation_id: consultationId, since: 0 },
        { direct: true },
      );
    }
    this.emitter.emit('joined', { consultation_id: consultationId, result, resumed: true });
    return result;
  }

  _flushQueue() {
    const queued = this._queue;
    this._queue = [];
    for (const entry of queued) this._transmit(entry);
  }

  _transmit(entry) {
    const ws = this._ws;
    if (!ws) {
      this._queue.push(entry);
      return;
    }
    this._pending.set(entry.frame.id, entry);
    if (!this._rawSend(ws, entry.frame)) {
      // The socket is going away; the close handler re-queues or fails it.
    }
  }

  /** Sends any command; resolves with its `result` (or null), rejects with a ConsultError. */
  request(type, fields = {}, options = {}) {
    return this._command(type, fields, options);
  }

  _command(type, fields, options = {}) {
    if (this._state === 'idle' || this._state === 'closed') {
      return Promise.reject(
        new ConsultError('not_connected', 'call connect() first', { command: type }),
      );
    }
    this._nextId += 1;
    const frame = { type, id: `c${this._nextId}`, ...fields };
    return new Promise((resolve, reject) => {
      const entry = { frame, resolve, reject, timer: null };
      const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
      entry.timer = setTimeout(() => {
        this._pending.delete(frame.id);
        const i = this._queue.indexOf(entry);
        if (i >= 0) this._queue.splice(i, 1);
        reject(
          new ConsultError('timeout', `no answer to ${type} within ${timeoutMs} ms`, {
            id: frame.id,
            command: type,
          }),
        );
      }, timeoutMs);
      if (this._state === 'open' || (options.direct && this._ws)) this._transmit(entry);
      else this._queue.push(entry);
    });
  }

  // ------------------------------------------------------------------ commands

  /** Application-level round trip. */
  ping() {
    return this._command('ping', {});
  }

  /** Joins a room; with `since`, replays what came after it (as `message` events). */
  async join(consultationId, { since } = {}) {
    let room = this._rooms.get(consultationId);
    const fresh = !room;
    if (fresh) {
      room = { lastSeq: since ?? null, baseSeq: null };
      this._rooms.set(consultationId, room);
    }
    const fields = { consultation_id: consultationId };
    if (since !== undefined && since !== null) fields.since = since;
    let result;
    try {
      result = await this._command('join', fields);
    } catch (error) {
      if (fresh && this._rooms.get(consultationId) === room) this._rooms.delete(consultationId);
      throw error;
    }
    // Where "live" started, for resuming a room joined without `since`.
    room.baseSeq = Math.max(room.baseSeq ?? 0, since ?? result.consultation.last_seq);
    this.emitter.emit('joined', { consultation_id: consultationId, result, resumed: false });
    return result;
  }

  /** Leaves a room (it is no longer re-joined after reconnects). */
  async leave(consultationId) {
    this._rooms.delete(consultationId);
    return this._command('leave', { consultation_id: consultationId });
  }

  /** Sends a chat message; resolves with `{kind:'sent', seq, duplicate, sent_at, client_msg_id}`. */
  async send(consultationId, body, { clientMsgId } = {}) {
    const client_msg_id = clientMsgId || newClientMsgId();
    const result = await this._command('send', { consultation_id: consultationId, client_msg_id, body });
    return { ...result, client_msg_id };
  }

  /** Starts or stops the typing indicator (the room must be joined). */
  typing(consultationId, active = true) {
    return this._command('typing', { consultation_id: consultationId, active: Boolean(active) });
  }

  /** Acknowledges every message up to `seq` as `delivered` or `read`. */
  ack(consultationId, seq, receipt = 'read') {
    return this._command('ack', { consultation_id: consultationId, seq, receipt });
  }

  /** A page of stored messages, oldest first. */
  history(consultationId, { before, limit } = {}) {
    const fields = { consultation_id: consultationId };
    if (before !== undefined) fields.before = before;
    if (limit !== undefined) fields.limit = limit;
    return this._command('history', fields);
  }

  /** Staff: scheduled → waiting for patient. */
  open(consultationId) {
    return this._command('open', { consultation_id: consultationId });
  }

  /** Patient: "I'm Ready for My Appointment". */
  ready(consultationId) {
    return this._command('ready', { consultation_id: consultationId });
  }

  /** Enters the consultation (staff start it; a patient may once allowed). */
  enter(consultationId) {
    return this._command('enter', { consultation_id: consultationId });
  }

  /** Staff: ends a consultation in progress. */
  end(consultationId) {
    return this._command('end', { consultation_id: consultationId });
  }

  /** Staff: cancels a consultation. */
  cancel(consultationId) {
    return this._command('cancel', { consultation_id: consultationId });
  }

  /** Staff: watches the "Active and Waiting" list (re-watched after reconnects).
   * Resolves with the snapshot's entries; also emits `dashboard_snapshot`. */
  async watchDashboard({ providerId } = {}) {
    const fields = providerId ? { provider_id: providerId } : {};
    const result = await this._command('watch_dashboard', fields);
    this._dashboard = fields;
    this.emitter.emit('dashboard_snapshot', { entries: result.entries, resumed: false });
    return result.entries;
  }

  /** Stops watching the dashboard. */
  unwatchDashboard() {
    this._dashboard = null;
    return this._command('unwatch_dashboard', {});
  }

  /** Staff: sends a Quick Message from a template (no need to enter or join). */
  async quickMessage(consultationId, templateId, variables = {}, { clientMsgId } = {}) {
    const client_msg_id = clientMsgId || newClientMsgId('q');
    const result = await this._command('quick_message', {
      consultation_id: consultationId,
      template_id: templateId,
      variables,
      client_msg_id,
    });
    return { ...result, client_msg_id };
  }

  /** Staff: "Alert Patient" with `channels` (`['push']`, `['sms']` or both). */
  async alert(consultationId, body, channels, { clientMsgId } = {}) {
    const client_msg_id = clientMsgId || newClientMsgId('a');
    const result = await this._command('alert', {
      consultation_id: consultationId,
      body,
      channels,
      client_msg_id,
    });
    return { ...result, client_msg_id };
  }

  /** Staff: the Quick Message templates (clinic defaults plus the provider's own). */
  async listTemplates({ providerId } = {}) {
    const result = await this._command('list_templates', providerId ? { provider_id: providerId } : {});
    return result.templates;
  }

  /** Staff: creates (no `templateId`) or updates a template. */
  async saveTemplate({ templateId, providerId, title, body, position } = {}) {
    const fields = { title, body };
    if (templateId) fields.template_id = templateId;
    if (providerId) fields.provider_id = providerId;
    if (position !== undefined) fields.position = position;
    const result = await this._command('save_template', fields);
    return result.template;
  }

  /** Staff: deletes a template. */
  deleteTemplate(templateId) {
    return this._command('delete_template', { template_id: templateId });
  }

  /** Patient: registers this device's push token (`fcm` or `apns`). */
  registerDevice({ platform, token, notificationsEnabled = true }) {
    return this._command('register_device', {
      platform,
      token,
      notifications_enabled: Boolean(notificationsEnabled),
    });
  }

  /** Patient: gives or withdraws consent to text messages. */
  setSmsConsent(consent) {
    return this._command('set_sms_consent', { consent: Boolean(consent) });
  }

  /** Patient app: went to the foreground (true) or background (false).
   * Restored after reconnects. */
  visibility(foreground) {
    this._foreground = Boolean(foreground);
    return this._command('visibility', { foreground: Boolean(foreground) });
  }

  /**
   * The consultations this user may act on (a patient's own, a provider's
   * assigned ones, an admin's clinic), by booked start.
   */
  async listConsultations({ includeClosed = false } = {}) {
    const result = await this._command('list_consultations', { include_closed: includeClosed });
    return result.consultations;
  }

  /** Staff: a consultation's push/SMS notifications and their outcomes. */
  async listNotifications(consultationId) {
    const result = await this._command('list_notifications', { consultation_id: consultationId });
    return result.notifications;
  }
}

/**
 * Sends `typing` true on the first keystroke and false after `idleMs` without
 * one (or on `stop()`), refreshing `true` every `refreshMs` while typing goes on.
 */
export function typingNotifier(client, consultationId, { idleMs = 3000, refreshMs = 5000 } = {}) {
  let active = false;
  let lastSent = 0;
  let idleTimer = null;
  const sendState = (value) => {
    active = value;
    lastSent = Date.now();
    client.typing(consultationId, value).catch(() => {});
  };
  return {
    input() {
      if (!active || Date.now() - lastSent > refreshMs) sendState(true);
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => active && sendState(false), idleMs);
    },
    stop() {
      clearTimeout(idleTimer);
      if (active) sendState(false);
    },
  };
}
