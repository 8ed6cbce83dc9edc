// The dashboard in headless Chromium (Debian's, through playwright-core): it loads behind its
// login, shows the live connection count, follows a client connecting, and the run saves a
// screenshot to .tmp/dashboard.png for a person to look at.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { Events, startProtectedBroker } from '../helpers/protected-broker.js';
import { unique, WAIT_MS } from '../helpers/broker.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = fileURLToPath(new URL('../../../.tmp/', import.meta.url));
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-dashboard-test-'));
let browser: BrowserContext | undefined;
after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the dashboard loads behind an admin login, shows the live connection count and follows a client connecting, with topics, the trusted component and session queues', async () => {
  if (!existsSync(CHROMIUM)) assert.fail(`${CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium)`);
  const passwd = join(dir, 'passwd');
  await run('mosquitto_passwd', ['-c', '-b', passwd, 'ops', 'dash-pw']);
  const b = await startProtectedBroker('inline', (c) => {
    c.passwordFile = passwd;
    c.http = { port: 0, host: '127.0.0.1', admins: ['ops'] };
  });
  try {
    // traffic to show: protected and plain messages, and an offline session with a queue
    const [alice, bob] = [unique('alice'), unique('bob')];
    const sub = await b.enrolled(bob);
    const events = new Events(sub);
    await sub.subscribeAsync('secure/ward-1/ecg', { qos: 1 });
    const pub = await b.enrolled(alice);
    for (let i = 0; i < 40; i++) await pub.publishAsync('secure/ward-1/ecg', `beat ${i}`, { qos: 1 });
    await events.next('a protected message');
    const offline = await b.mqtt({ clientId: unique('offline'), clean: false, protocolVersion: 4 });
    await offline.subscribeAsync('plant/line-3/temperature', { qos: 1 });
    await offline.endAsync();
    for (let i = 0; i < 25; i++) await b.publish('plant/line-3/temperature', `${20 + i / 10}`, { qos: 1 });

    browser = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      httpCredentials: { username: 'ops', password: 'dash-pw' },
      viewport: { width: 1200, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    const response = await page.goto(`http://127.0.0.1:${b.running.http!.port}/`);
    assert.equal(response?.status(), 200);
    const connected = (): Promise<string> => page.locator('#connections').innerText();
    const before = b.broker.clients.size;
    await page.waitForFunction((n) => document.getElementById('connections')?.textContent === String(n), before, { timeout: WAIT_MS });
    assert.equal(await connected(), String(before));

    const late = await b.mqtt({ protocolVersion: 5 });
    await page.waitForFunction((n) => document.getElementById('connections')?.textContent === String(n), before + 1, { timeout: WAIT_MS });
    assert.equal(await connected(), String(before + 1));

    // a steady stream while the page watches: the rate tiles and the chart move
    const stream = setInterval(() => void b.publish('plant/line-3/pressure', '1.2', { qos: 0 }), 20);
    try {
      await page.waitForFunction(() => Number(document.getElementById('rate-in')?.textContent) > 0, undefined, { timeout: WAIT_MS });
      await page.waitForFunction(() => (document.querySelector('#chart polyline')?.getAttribute('points') ?? '').split(' ').length >= 3, undefined, { timeout: WAIT_MS });
    } finally {
      clearInterval(stream);
    }
    assert.match(await page.locator('#topics').innerText(), /secure\/ward-1\/ecg\s+protected/);
    assert.match(await page.locator('#tee').innerText(), /answering[\s\S]*secure\/#[\s\S]*key cache hit ratio/);
    assert.match(await page.locator('#queues').innerText(), /offline\s+\d+/);
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: join(SCREENSHOTS, 'dashboard.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await late.endAsync();
  } finally {
    await b.close();
  }
});
