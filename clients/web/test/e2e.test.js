// End-to-end: the provider console and the patient app in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core; no browser download),
// against a real hub process serving clients/web.
//
// Writes docs/screenshots/console.png and patient.png (override the folder
// with E2E_SCREENSHOT_DIR).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { ConsultClient } from '../../js/src/consult.js';
import { startHub } from '../../js/test/support/hub.js';

const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REPO = resolve(WEB_DIR, '..', '..');
const SCREENSHOTS = process.env.E2E_SCREENSHOT_DIR || join(REPO, 'docs', 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TIMEOUT = 10000;

let hub;
let browser;
let profileDir;
let fixture;
let consolePage;
let patientPage;
const pageErrors = [];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  hub = await startHub({ staticDir: WEB_DIR });
  // Playwright gives Chromium a fresh temporary profile (--user-data-dir) itself.
  profileDir = mkdtempSync(join(tmpdir(), 'consult-e2e-'));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--disk-cache-dir=${join(profileDir, 'cache')}`,
    ],
  });
  fixture = await hub.consultation({
    clinic: 'riverside',
    provider: { id: 'dr-lee', display_name: 'Dr. Morgan Lee' },
    patient: { id: 'pat-alex', display_name: 'Alex Rivera', phone: '+15550100001' },
    status: 'waiting_for_patient',
    scheduledAt: new Date(Date.now() - 4 * 60000).toISOString(),
  });
  // More rows: Sam waits (gold); Jo has already tapped ready (green).
  await hub.consultation({
    clinic: 'riverside',
    provider: { id: 'dr-lee', display_name: 'Dr. Morgan Lee' },
    patient: { id: 'pat-sam', display_name: 'Sam Okafor', phone: '+15550100002' },
    status: 'waiting_for_patient',
    scheduledAt: new Date(Date.now() - 2 * 60000).toISOString(),
  });
  const jo = await hub.consultation({
    clinic: 'riverside',
    provider: { id: 'dr-lee', display_name: 'Dr. Morgan Lee' },
    patient: { id: 'pat-jo', display_name: 'Jo Lindqvist', phone: '+15550100003' },
    status: 'waiting_for_patient',
  });
  const joApp = new ConsultClient({ url: hub.wsUrl, token: jo.patientToken, reconnect: false });
  await joApp.connect();
  await joApp.ready(jo.consultation.id);
  joApp.close();

  const consoleContext = await browser.newContext({ viewport: { width: 1360, height: 860 } });
  const patientContext = await browser.newContext({
    viewport: { width: 430, height: 900 },
    deviceScaleFactor: 1,
  });
  consolePage = await consoleContext.newPage();
  patientPage = await patientContext.newPage();
  for (const page of [consolePage, patientPage]) {
    page.setDefaultTimeout(TIMEOUT);
    page.on('pageerror', (error) => pageErrors.push(error.message));
  }
});

after(async () => {
  await browser?.close();
  await hub?.dispose();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
});

const row = (name) => consolePage.locator('#rows li.row', { hasText: name });

test('both pages sign in with a token kept out of the URL', async () => {
  await consolePage.goto(`${hub.baseUrl}/console/`);
  await consolePage.fill('#token', fixture.providerToken);
  await consolePage.click('#sign-in-form button[type=submit]');
  await consolePage.locator('#conn[data-state=open]').waitFor();
  const alex = row('Alex Rivera');
  await alex.waitFor();
  await assert.doesNotReject(alex.locator('.badge', { hasText: 'Waiting for Patient' }).waitFor());
  assert.ok(!consolePage.url().includes(fixture.providerToken));
  assert.equal(
    await consolePage.evaluate(() => sessionStorage.getItem('consult.console.token')),
    fixture.providerToken,
  );

  // The appointment number may come in the fragment of a link; the token never.
  // (Without the trailing slash, too: the pages use absolute asset paths.)
  await patientPage.goto(`${hub.baseUrl}/patient#consultation=${fixture.consultation.id}`);
  assert.equal(await patientPage.inputValue('#consultation-id'), fixture.consultation.id);
  await patientPage.fill('#token', fixture.patientToken);
  await patientPage.click('#sign-in-form button[type=submit]');
  await patientPage.locator('#status-card[data-status=waiting_for_patient]').waitFor();
  await patientPage.getByRole('button', { name: "I'm Ready for My Appointment" }).waitFor();
  assert.ok(!patientPage.url().includes(fixture.patientToken));
});

test('(a) a Quick Message sent from the list reaches the patient', async () => {
  const alex = row('Alex Rivera');
  await alex.getByRole('button', { name: 'Quick Message to Alex Rivera' }).click();
  const menu = alex.locator('form.quick-menu');
  await menu.waitFor();
  await menu.getByLabel('Template').selectOption({ label: 'Running behind' });
  await menu.getByLabel('minutes').fill('10');
  assert.match(await menu.locator('.quick-preview').textContent(), /running 10 minutes behind/);
  await menu.getByRole('button', { name: 'Send' }).click();
  await menu.waitFor({ state: 'detached' });
  await alex.locator('.flash', { hasText: 'Quick Message sent' }).waitFor();
  // Not entered: the row is still waiting.
  assert.equal(await alex.getAttribute('data-status'), 'waiting_for_patient');

  const message = patientPage.locator('#chat li.kind-quick');
  await message.waitFor();
  assert.match(
    await message.textContent(),
    /I am running 10 minutes behind\. Thank you for your patience\./,
  );
  // The provider messaged first, so the patient may already enter.
  await patientPage.locator('#enter').waitFor();
});

test('(b) the patient taps ready and the console row turns green', async () => {
  await patientPage.getByRole('button', { name: "I'm Ready for My Appointment" }).click();
  await patientPage.locator('#status-card[data-status=patient_ready]').waitFor();
  const alex = row('Alex Rivera');
  await consolePage.locator('#rows li.row[data-status=patient_ready]', { hasText: 'Alex Rivera' }).waitFor();
  const badge = alex.locator('.badge', { hasText: 'Patient is Ready' });
  await badge.waitFor();
  const color = await badge.evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.equal(color, 'rgb(31, 138, 59)', 'green badge');
  assert.equal(
    await row('Jo Lindqvist').locator('.badge').textContent(),
    'Patient is Ready',
  );
  // Sam's row is still gold.
  const samBadge = row('Sam Okafor').locator('.badge');
  assert.equal(await samBadge.textContent(), 'Waiting for Patient');
  assert.equal(
    await samBadge.evaluate((el) => getComputedStyle(el).backgroundColor),
    'rgb(212, 160, 23)',
    'gold badge',
  );
});

test('chat with receipts and typing once the provider enters', async () => {
  await row('Alex Rivera').getByRole('button', { name: 'Enter consultation with Alex Rivera' }).click();
  // Joined: room events such as typing reach the console from now on.
  await consolePage.locator('#consultation-view[data-joined=true]').waitFor();
  await consolePage.locator('#c-badge', { hasText: 'In Progress' }).waitFor();
  await patientPage.locator('#status-card[data-status=in_progress]').waitFor();
  await patientPage.click('#enter');
  await patientPage.locator('#entered').waitFor();

  await patientPage.fill('#composer-text', 'Hello, I can hear you.');
  await consolePage.locator('#typing', { hasText: 'Alex Rivera is typing' }).waitFor();
  await patientPage.press('#composer-text', 'Enter');
  await consolePage.locator('#chat li.msg.in', { hasText: 'Hello, I can hear you.' }).waitFor();

  await consolePage.fill('#composer-text', 'Great, let us begin.');
  await consolePage.click('#composer button[type=submit]');
  await patientPage.locator('#chat li.msg.in', { hasText: 'Great, let us begin.' }).waitFor();
  // The patient's page is visible, so it acknowledges delivered and read.
  // This message's ticks, not any earlier message's (the Quick Message sent
  // from the list is already read).
  const ticks = consolePage.locator('#chat li.msg.out', { hasText: 'Great, let us begin.' }).locator('.ticks');
  await ticks.and(consolePage.locator('[data-state=read]')).waitFor();
  assert.equal(await ticks.getAttribute('aria-label'), 'Read');
});

test('(c) an alert naming the patient is refused and the error shows in the console', async () => {
  // Consent first, so that a clean SMS alert can go out.
  await patientPage.check('#sms-consent');
  await patientPage.locator('#sms-status', { hasText: 'We may text you reminders.' }).waitFor();

  await consolePage.getByRole('button', { name: 'Alert Patient' }).click();
  const form = consolePage.locator('#alert-form');
  await form.waitFor();
  assert.match(await form.textContent(), /No names or health details/);
  await form.getByLabel('SMS').check();
  await form.getByLabel('Push Notifications').uncheck();
  await form.getByLabel('Alert text').fill('Please open the app to continue your appointment.');
  await form.getByRole('button', { name: 'Send alert' }).click();
  await form.waitFor({ state: 'hidden' });
  await patientPage.locator('#alert-banner').waitFor();
  assert.match(
    await patientPage.locator('#alert-body').textContent(),
    /Please open the app to continue your appointment\./,
  );
  await patientPage.locator('#chat li.kind-alert').waitFor();
  await consolePage.locator('#notifications tr', { hasText: 'SMS' }).first().waitFor();

  await consolePage.getByRole('button', { name: 'Alert Patient' }).click();
  await form.getByLabel('Alert text').fill('Alex, please join your appointment now.');
  await form.getByRole('button', { name: 'Send alert' }).click();
  const error = consolePage.locator('#alert-error');
  await error.waitFor();
  assert.equal(await error.getAttribute('data-code'), 'privacy_violation');
  assert.match(await error.textContent(), /remove names and health details/i);
  assert.equal(await form.isVisible(), true, 'the form stays open to fix the text');
  // The refused span is marked under the box and selected in it.
  assert.equal(await error.locator('mark.refused').textContent(), 'Alex');
  assert.deepEqual(
    await form.getByLabel('Alert text').evaluate((box) => [box.selectionStart, box.selectionEnd]),
    [0, 4],
  );
  // Nothing reached the patient.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await patientPage.locator('#chat li', { hasText: 'Alex, please' }).count(), 0);
});

test('screenshots of both pages', async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await consolePage.screenshot({ path: join(SCREENSHOTS, 'console.png'), fullPage: true });
  await patientPage.screenshot({ path: join(SCREENSHOTS, 'patient.png'), fullPage: true });
  assert.ok(existsSync(join(SCREENSHOTS, 'console.png')));
  assert.ok(existsSync(join(SCREENSHOTS, 'patient.png')));
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the pages');
});
