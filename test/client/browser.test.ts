// The browser build of the SDK in Debian's headless Chromium, against the broker over WebSockets:
// the page enrols, subscribes to a protected topic, shows what a Node publisher sent, and publishes back.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { build } from 'esbuild';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type * as Sdk from '../../src/client/browser.js';
import { unique, WAIT_MS } from '../helpers/broker.js';
import { Events, startProtectedBroker, type ProtectedBroker } from '../helpers/protected-broker.js';

const CHROMIUM = '/usr/bin/chromium';
const ENTRY = fileURLToPath(new URL('../../src/client/browser.js', import.meta.url));

/** What the page's script finds on window: the bundled SDK. */
interface PageWindow {
  sdk: typeof Sdk;
  client?: Sdk.ProtectedClient;
}

let b: ProtectedBroker;
let http: Server;
let profile: string;
let browser: BrowserContext | undefined;

async function bundle(): Promise<string> {
  // platform 'browser': a `node:` import reachable from the entry fails the build
  const out = await build({ entryPoints: [ENTRY], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, logLevel: 'silent' });
  return out.outputFiles[0]!.text;
}

before(async () => {
  b = await startProtectedBroker('inline', (c) => (c.websocket = { port: 0, path: '/mqtt', host: '127.0.0.1' }));
  const sdk = await bundle();
  const page = '<!doctype html><meta charset="utf-8"><title>mqt-tz</title><pre id="out"></pre><pre id="err"></pre>'
    + '<script type="module">import * as sdk from "/sdk.js"; window.sdk = sdk; document.title = "ready";</script>';
  http = createServer((req, res) => {
    const [type, body] = req.url === '/sdk.js' ? ['text/javascript', sdk] : ['text/html', page];
    res.writeHead(200, { 'content-type': type }).end(body);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  profile = mkdtempSync(join(tmpdir(), 'mqt-tz-chromium-'));
});

after(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => http.close(() => resolve()));
  await b.close();
  rmSync(profile, { recursive: true, force: true });
});

async function openPage(): Promise<Page> {
  if (!existsSync(CHROMIUM)) assert.fail(`${CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium); the browser build is tested in it`);
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(`http://127.0.0.1:${(http.address() as { port: number }).port}/`);
  await page.waitForFunction(() => document.title === 'ready', undefined, { timeout: WAIT_MS }).catch(() => assert.fail(`the SDK bundle did not load: ${problems.join('; ')}`));
  return page;
}

test('the browser build enrols over WebSockets in headless Chromium, opens a protected message from Node, and publishes one back', async () => {
  const page = await openPage();
  const [browserId, nodeId] = [unique('browser'), unique('node')];
  const node = await b.enrolled(nodeId);
  const fromBrowser = new Events(node);
  await node.subscribeAsync('secure/from-browser', { qos: 1 });

  const wsUrl = `ws://127.0.0.1:${b.running.port('ws')}/mqtt`;
  await page.evaluate(async ({ url, identity, teeFingerprint, token }) => {
    const w = window as unknown as PageWindow;
    const keyStore = w.sdk.memoryKeyStore();
    const client = await w.sdk.connectProtected(url, { identity, teeFingerprint, token, keyStore, protectedTopics: ['secure/#'], reconnectPeriod: 0 });
    w.client = client;
    client.on('message', (topic, payload, _packet, info) => {
      document.querySelector('#out')!.textContent = `${topic} from ${info.sender}: ${new TextDecoder().decode(payload)}`;
    });
    client.on('error', (err) => (document.querySelector('#err')!.textContent = err.message));
    await client.subscribeAsync('secure/to-browser', { qos: 1 });
  }, { url: wsUrl, identity: browserId, teeFingerprint: b.fingerprint, token: b.token(browserId) });
  assert.equal(await b.tee.isEnrolled(browserId), true);

  await node.publishAsync('secure/to-browser', 'hello browser', { qos: 1 });
  await page.waitForFunction(() => document.querySelector('#out')!.textContent !== '' || document.querySelector('#err')!.textContent !== '', undefined, { timeout: WAIT_MS });
  assert.equal(await page.textContent('#err'), '');
  assert.equal(await page.textContent('#out'), `secure/to-browser from ${nodeId}: hello browser`);

  await page.evaluate(() => (window as unknown as PageWindow).client!.publishAsync('secure/from-browser', 'hello node', { qos: 1 }));
  const e = await fromBrowser.next('the message from the browser');
  assert.deepEqual(e.kind === 'message' ? [e.topic, e.text, e.sender, e.protected] : e.error.message, ['secure/from-browser', 'hello node', browserId, true]);
  await page.evaluate(() => (window as unknown as PageWindow).client!.endAsync());
});
