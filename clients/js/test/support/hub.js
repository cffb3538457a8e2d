// Starts a real consult-hub process for tests: the built binary
// (target/debug/consult-hub, or $CONSULT_HUB_BIN) with `serve` on a free
// loopback port, a fresh SQLite database and key file in a temp dir, and the
// API key `test-key`. Used by clients/js and clients/web tests.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const API_KEY = 'js-sdk-test-api-key-0123456789abcdef';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

export function hubBinary() {
  const bin =
    process.env.CONSULT_HUB_BIN ||
    join(process.env.CARGO_TARGET_DIR || join(REPO_ROOT, 'target'), 'debug', 'consult-hub');
  if (!existsSync(bin)) {
    throw new Error(`hub binary ${bin} not found: run \`cargo build -p consult-hub\` first`);
  }
  return bin;
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let unique = 0;
/** A short unique id for test data. */
export function uid(prefix) {
  unique += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${unique}`;
}

export class Hub {
  constructor({ staticDir, env = {} } = {}) {
    this.bin = hubBinary();
    this.staticDir = staticDir;
    this.extraEnv = env;
    this.dir = mkdtempSync(join(tmpdir(), 'consult-hub-test-'));
    this.port = null;
    this.proc = null;
    this.log = '';
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/v1/ws`;
  }

  /** Starts the hub (again, on the same port and database after `stop`). */
  async start() {
    if (this.port === null) this.port = await freePort();
    // The hub refuses unknown CONSULT_* variables (scripts/test exports
    // CONSULT_TEST_*), so the inherited ones are left out.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([key]) => !key.startsWith('CONSULT_')),
    );
    const env = {
      ...inherited,
      CONSULT_AUTH__JWT_SECRET: 'js-sdk-test-secret-0123456789abcdef',
      CONSULT_AUTH__API_KEYS: JSON.stringify([API_KEY]),
      CONSULT_AUTH__KEY_FILE: join(this.dir, 'k'),
      CONSULT_DATABASE__URL: `sqlite://${join(this.dir, 'db')}?mode=rwc`,
      CONSULT_LOG__FILTER: 'warn',
      ...this.extraEnv,
    };
    if (this.staticDir) {
      env.CONSULT_WEB__STATIC_DIR = this.staticDir;
      env.CONSULT_WEB__SDK_DIR = fileURLToPath(new URL('../../src', import.meta.url));
    }
    const proc = spawn(this.bin, ['serve', '--listen', `127.0.0.1:${this.port}`], {
      cwd: this.dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    // Never leave a hub behind if the test process dies first.
    const reap = () => proc.kill('SIGKILL');
    process.once('exit', reap);
    proc.once('exit', () => process.off('exit', reap));
    const keep = (chunk) => {
      this.log = (this.log + chunk.toString()).slice(-20000);
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    let exited = null;
    proc.once('exit', (code, signal) => {
      exited = { code, signal };
    });
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (exited) {
        throw new Error(`hub exited early (${JSON.stringify(exited)}):\n${this.log}`);
      }
      try {
        const res = await fetch(`${this.baseUrl}/healthz`);
        if (res.ok) return this;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`hub did not become healthy in time:\n${this.log}`);
  }

  /** Stops the process: SIGTERM drains (sessions get 1001), SIGKILL drops (1006). */
  async stop(signal = 'SIGTERM') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 15000);
    await done;
    clearTimeout(timer);
  }

  /** Stops the hub and removes its temp dir. */
  async dispose() {
    await this.stop('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }

  async api(method, path, body) {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${API_KEY}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const error = new Error(`${method} ${path}: ${res.status} ${text}`);
      error.status = res.status;
      error.body = data;
      throw error;
    }
    return data;
  }

  /** POST /v1/tokens. */
  async token(user, role, clinic, ttlSecs = 3600) {
    const { token } = await this.api('POST', '/v1/tokens', {
      user,
      role,
      clinic,
      ttl_secs: ttlSecs,
    });
    return token;
  }

  /**
   * Creates a consultation with fresh ids (overridable) and tokens for its
   * provider and patient. Returns `{ consultation, clinic, provider, patient,
   * providerToken, patientToken }`.
   */
  async consultation({
    clinic = uid('clinic'),
    provider = { id: uid('dr'), display_name: 'Dr. Morgan Lee' },
    patient = { id: uid('pat'), display_name: 'Alex Rivera', phone: '+15550100001' },
    status = 'waiting_for_patient',
    scheduledAt,
  } = {}) {
    const body = { clinic_id: clinic, clinic_name: 'Test Clinic', provider, patient, status };
    if (scheduledAt) body.scheduled_at = scheduledAt;
    const consultation = await this.api('POST', '/v1/consultations', body);
    return {
      consultation,
      clinic,
      provider,
      patient,
      providerToken: await this.token(provider.id, 'provider', clinic),
      patientToken: await this.token(patient.id, 'patient', clinic),
    };
  }
}

/** Starts a hub; call `dispose()` when done. */
export async function startHub(options) {
  const hub = new Hub(options);
  await hub.start();
  return hub;
}
