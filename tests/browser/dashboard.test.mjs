// Real-browser test of the built-in dashboard (controller/dashboard/index.html, served at
// GET / by tapio-controller --http).
//
// Starts a real tapio-controller, feeds it with the real tapio-loadgen, opens the page in
// Debian's chromium through playwright-core and checks every panel against the query API.
// Run with plain node (run.sh does the setup):
//
//   TAPIO_BIN_DIR=build/bin node tests/browser/dashboard.test.mjs
//
// Environment:
//   TAPIO_BIN_DIR        directory holding tapio-controller and tapio-loadgen (required)
//   TAPIO_CHROMIUM       chromium binary (default /usr/bin/chromium)
//   TAPIO_SCREENSHOT=1   also write a 1400x900 screenshot to docs/dashboard.png
//   TAPIO_DASHBOARD_URL  development aid: test an already running server (for example a
//                        stub) instead of starting the controller and the loadgen
//
// Prints "N passed, M failed" and exits non-zero when anything failed.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SOURCE_DIR = path.resolve(HERE, '..', '..');
const SCREENSHOT = path.join(SOURCE_DIR, 'docs', 'dashboard.png');
const CHROMIUM = process.env.TAPIO_CHROMIUM || '/usr/bin/chromium';
const AGENTS = 5;
const EXPECTED_NODES = Array.from({ length: AGENTS }, (_, i) => `node-${String(i).padStart(4, '0')}`);

let passed = 0, failed = 0;
const children = [];
let tmpDir = null, browser = null, ingestAddr = null;

function log(...a) { console.log('[dashboard]', ...a); }
function pass(name) { passed++; console.log(`ok   - ${name}`); }
function fail(name, why) { failed++; console.log(`FAIL - ${name}\n       ${String(why).split('\n').join('\n       ')}`); }
async function check(name, fn) {
	try { await fn(); pass(name); } catch (e) { fail(name, e && e.stack || e); }
}
function assertEq(actual, expected, what) {
	const a = JSON.stringify(actual), e = JSON.stringify(expected);
	if (a !== e) throw new Error(`${what}:\n  page: ${a.slice(0, 1500)}\n  api:  ${e.slice(0, 1500)}`);
}
function assert(cond, what) { if (!cond) throw new Error(what); }
function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }

function freePort() {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.unref();
		s.on('error', reject);
		s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
	});
}

function start(bin, args, name) {
	const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
	child.output = '';
	child.exited = new Promise(resolve => child.on('exit', (code, sig) => resolve({ code, sig })));
	child.on('error', e => { child.output += `spawn error: ${e.message}\n`; });
	for (const s of [child.stdout, child.stderr]) s.on('data', d => { child.output += d; });
	child.label = name;
	children.push(child);
	return child;
}

async function stopAll() {
	for (const c of children) {
		if (c.exitCode === null && c.signalCode === null) {
			c.kill('SIGTERM');
			const r = await Promise.race([c.exited, sleep(5000).then(() => null)]);
			if (!r) { c.kill('SIGKILL'); await c.exited; }
		}
	}
}

async function getJSON(base, p) {
	const res = await fetch(new URL(p, base));
	const body = await res.text();
	if (!res.ok) throw new Error(`GET ${p}: ${res.status} ${body.slice(0, 300)}`);
	return JSON.parse(body);
}

async function waitFor(what, fn, timeoutMs) {
	const deadline = Date.now() + timeoutMs;
	let last;
	for (;;) {
		try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
		await sleep(100);
	}
}

// Start controller + loadgen; returns the dashboard base URL.
async function startController() {
	const binDir = process.env.TAPIO_BIN_DIR;
	if (!binDir) throw new Error('TAPIO_BIN_DIR is not set (directory with tapio-controller and tapio-loadgen)');
	const controller = path.join(binDir, 'tapio-controller');
	const loadgen = path.join(binDir, 'tapio-loadgen');
	for (const b of [controller, loadgen])
		if (!fs.existsSync(b)) throw new Error(`missing binary ${b}: build it first (cmake --build … --target ${path.basename(b)})`);

	const p1 = await freePort(), p2 = await freePort();
	ingestAddr = `127.0.0.1:${p1}`;
	tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tapio-dashboard-'));
	const ctl = start(controller, ['--listen', `127.0.0.1:${p1}`, '--http', `127.0.0.1:${p2}`,
		'--data-dir', path.join(tmpDir, 'data'), '--heartbeat-interval', '1s'], 'tapio-controller');
	const base = `http://127.0.0.1:${p2}/`;
	await waitFor('the controller query API (/v1/status)', async () => {
		if (ctl.exitCode !== null) throw new Error(`tapio-controller exited (${ctl.exitCode}):\n${ctl.output}`);
		const r = await fetch(new URL('v1/status', base));
		return r.ok;
	}, 15000).catch(e => { throw new Error(`${e.message}\ncontroller output:\n${ctl.output}`); });
	log(`controller up: ingest 127.0.0.1:${p1}, http ${base}`);

	const lg = start(loadgen, ['--controller', `127.0.0.1:${p1}`, '--agents', String(AGENTS),
		'--rate', '500', '--duration', '3'], 'tapio-loadgen');
	const r = await Promise.race([lg.exited, sleep(60000).then(() => null)]);
	if (!r) { lg.kill('SIGKILL'); throw new Error(`tapio-loadgen did not finish in 60 s:\n${lg.output}`); }
	if (r.code !== 0) throw new Error(`tapio-loadgen exited ${r.code ?? r.sig}:\n${lg.output}`);
	log('loadgen done:', lg.output.split('\n').filter(l => l && !/^\d{4}-\d\d-\d\dT/.test(l)).join(' | '));
	return base;
}

// ---- what the page should show, computed from the API ----
function sumByGroup(summary) {
	const out = {};
	for (const [k, buckets] of Object.entries(summary.groups || {}))
		out[k] = buckets.reduce((a, b) => a + b.count, 0);
	return out;
}
function sortedEntries(obj) {
	return Object.entries(obj).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

async function main() {
	const external = process.env.TAPIO_DASHBOARD_URL;
	const base = external ? new URL('/', external).href : await startController();

	// GET / must be the dashboard; a missing endpoint is a failure, not a skip.
	await check('GET / serves the dashboard page', async () => {
		const res = await fetch(base);
		const body = await res.text();
		assert(res.ok, `GET / answered ${res.status}: ${body.slice(0, 200)}`);
		assert(/text\/html/.test(res.headers.get('content-type') || ''), `content-type ${res.headers.get('content-type')}`);
		assert(body.includes('<title>Tapio</title>'), 'the page has no <title>Tapio</title>');
		assert(!/<(script|link|img)[^>]+(src|href)=["']?(https?:)?\/\//i.test(body), 'the page references external assets');
	});
	if (failed) throw new Error('no dashboard at GET / (is controller/dashboard/index.html embedded and served?)');

	browser = await chromium.launch({
		executablePath: CHROMIUM,
		headless: true,
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
		// launch() always gives chromium a fresh temporary --user-data-dir (and refuses one in args).
	});
	const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
	const page = await context.newPage();
	const pageErrors = [], foreign = [];
	page.on('pageerror', e => pageErrors.push(e.message));
	page.on('request', r => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) foreign.push(r.url()); });

	const refreshes = () => page.evaluate(() => Number(document.body.dataset.refreshes));
	async function waitRefreshAfter(n) {
		await page.waitForFunction(k => Number(document.body.dataset.refreshes) > k, n, { timeout: 15000 });
	}

	await page.goto(base, { waitUntil: 'load' });
	await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1, null, { timeout: 15000 });
	// Freeze the page so the comparisons below read one consistent render.
	await page.click('#pause');

	// The loadgen has finished: the store no longer changes, so the API answers now are what
	// the page rendered.
	const byType = await getJSON(base, 'v1/summary?by=type&bucket=1m&since=1h');
	const byNode = await getJSON(base, 'v1/summary?by=node&bucket=1m&since=1h');
	const occ = await getJSON(base, 'v1/occurrences?limit=50');
	const agents = await getJSON(base, 'v1/agents');
	const status = await getJSON(base, 'v1/status');

	await check('page title and no error banner', async () => {
		assertEq(await page.title(), 'Tapio', 'title');
		assertEq(await page.evaluate(() => document.body.dataset.state), 'ready', 'body data-state');
		assert(!(await page.isVisible('#banner')), 'error banner visible: ' + await page.textContent('#banner'));
	});

	await check('#status shows the controller id, version, uptime and store size', async () => {
		const t = await page.textContent('#status');
		assert(t.includes(status.controller_id), `controller id ${status.controller_id} not in "${t}"`);
		assert(t.includes(status.version), `version ${status.version} not in "${t}"`);
		assert(/\d+s|\d+m|\d+h|\d+d/.test(await page.textContent('#st-uptime')), 'uptime not rendered');
		assert(/\d.*B/.test(await page.textContent('#st-store')), 'store size not rendered');
	});

	await check('#chart: data-count sums per type equal /v1/summary?by=type', async () => {
		const rects = await page.$$eval('#chart [data-type][data-count]',
			els => els.map(e => [e.getAttribute('data-type'), Number(e.getAttribute('data-count'))]));
		const pageSums = {};
		for (const [t, c] of rects) pageSums[t] = (pageSums[t] || 0) + c;
		const apiSums = sumByGroup(byType);
		assert(Object.keys(apiSums).length > 0, 'the API summary is empty: the loadgen stored nothing?');
		assertEq(sortedEntries(pageSums), sortedEntries(apiSums), 'per-type totals');
		if (!external)   // a fresh store: everything it holds is from the last hour
			assertEq(Object.values(pageSums).reduce((a, b) => a + b, 0), status.store.records, 'chart total vs store records');
		const nonZero = Object.values(byType.groups).reduce((a, b) => a + b.filter(x => x.count > 0).length, 0);
		assertEq(rects.length, nonZero, 'one chart element per non-zero bucket and type');
		assert(rects.every(([, c]) => c > 0), 'a chart element has a zero count');
		const legend = await page.$$eval('#chart-legend [data-type]', els => els.map(e => e.getAttribute('data-type')).sort());
		assertEq(legend, Object.keys(apiSums).sort(), 'legend types');
	});

	await check('#top-nodes matches /v1/summary?by=node summed and sorted', async () => {
		const rows = await page.$$eval('#top-nodes tbody tr[data-node]',
			els => els.map(e => [e.getAttribute('data-node'), Number(e.getAttribute('data-count'))]));
		const api = Object.entries(sumByGroup(byNode)).filter(([, c]) => c > 0)
			.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 20);
		assertEq(rows, api, 'top nodes');
		if (!external) assertEq(rows.map(r => r[0]).sort(), EXPECTED_NODES, 'loadgen nodes in top nodes');
	});

	await check('#occurrences rows are the ids of /v1/occurrences?limit=50, in order', async () => {
		const ids = await page.$$eval('#occurrences tbody tr[data-id]', els => els.map(e => e.getAttribute('data-id')));
		assertEq(ids, occ.occurrences.map(o => o.id), 'row ids');
		assert(ids.length === 50 || external, `expected 50 rows, got ${ids.length}`);
		const cells = await page.$$eval('#occurrences tbody tr[data-id]:first-child td', els => els.map(e => e.textContent));
		const o = occ.occurrences[0];
		assertEq(cells.length, 6, 'columns');
		assert(cells[1].length > 0 && o.type.endsWith(cells[1]), `type cell "${cells[1]}" for ${o.type}`);
		assertEq(cells[2], o.severity, 'severity cell');
		assertEq(cells[3], o.context.node, 'node cell');
		if (o.data && o.data.dst_ip) assert(cells[4].includes(String(o.data.dst_port)), `key facts "${cells[4]}" lack dst_port`);
	});

	await check('#agents lists the loadgen nodes as /v1/agents does', async () => {
		const nodes = await page.$$eval('#agents tbody tr[data-node]', els => els.map(e => e.getAttribute('data-node')).sort());
		assertEq(nodes, agents.agents.map(a => a.node).sort(), 'agent nodes');
		if (!external) assertEq(nodes, EXPECTED_NODES, 'the 5 loadgen nodes');
		const conv = await page.$$eval('#convergence tbody tr[data-hash]', els => els.map(e => Number(e.getAttribute('data-count'))));
		assertEq(conv.reduce((a, b) => a + b, 0), agents.agents.length, 'convergence counts add up to the agents');
	});

	await check('clicking a row shows the occurrence JSON', async () => {
		const id = occ.occurrences[0].id;
		await page.click(`#occurrences tbody tr[data-id="${id}"]`);
		const detail = JSON.parse(await page.textContent('#occ-detail'));
		assertEq(detail.id, id, 'detail id');
		await page.click(`#occurrences tbody tr[data-id="${id}"]`);
		assert(!(await page.isVisible('#occ-detail')), 'second click hides the detail');
	});

	await check('type filter: Apply shows only that type, as the API does', async () => {
		const counts = sumByGroup(byType);
		const type = Object.keys(counts).sort((a, b) => counts[a] - counts[b])[0];  // rarest: not in the unfiltered page
		await page.selectOption('#f-type', type);
		await page.click('#apply');
		await page.waitForFunction(t => (document.getElementById('occurrences').dataset.query || '').includes('type=' + t),
			type, { timeout: 10000 });
		const rows = await page.$$eval('#occurrences tbody tr[data-id]',
			els => els.map(e => [e.getAttribute('data-id'), e.getAttribute('data-type')]));
		const api = await getJSON(base, `v1/occurrences?limit=50&type=${encodeURIComponent(type)}`);
		assert(rows.length > 0, `no rows for ${type}`);
		assert(rows.every(r => r[1] === type), `a row of another type: ${JSON.stringify(rows.filter(r => r[1] !== type))}`);
		assertEq(rows.map(r => r[0]), api.occurrences.map(o => o.id), 'filtered ids');
		await page.click('#clear');
		await page.waitForFunction(() => !(document.getElementById('occurrences').dataset.query || '').includes('type='),
			null, { timeout: 10000 });
	});

	await check('node and severity filters', async () => {
		const node = EXPECTED_NODES[1];
		await page.fill('#f-node', external ? 'node-0001' : node);
		await page.selectOption('#f-severity', 'critical');
		await page.click('#apply');
		await page.waitForFunction(() => /severity=critical/.test(document.getElementById('occurrences').dataset.query || ''),
			null, { timeout: 10000 });
		const rows = await page.$$eval('#occurrences tbody tr[data-id]',
			els => els.map(e => [e.getAttribute('data-id'), e.getAttribute('data-node'), e.getAttribute('data-severity')]));
		const api = await getJSON(base, `v1/occurrences?limit=50&node=${node}&severity=critical`);
		assertEq(rows.map(r => r[0]), api.occurrences.map(o => o.id), 'filtered ids');
		assert(rows.every(r => r[1] === node && r[2] === 'critical'), 'a row outside the filter');
		await page.click('#clear');
		await page.waitForFunction(() => (document.getElementById('occurrences').dataset.query || '') === 'v1/occurrences?limit=50',
			null, { timeout: 10000 });
	});

	await check('an API error envelope shows in the banner, and clears on recovery', async () => {
		await page.route('**/v1/agents', route => route.fulfill({
			status: 503, contentType: 'application/json',
			body: JSON.stringify({ error: { code: 'UNAVAILABLE', message: 'store is not open (injected by the test)' } }),
		}));
		let n = await refreshes();
		await page.click('#refresh-now');
		await waitRefreshAfter(n);
		assert(await page.isVisible('#banner'), 'banner not visible');
		const text = await page.textContent('#banner');
		assert(text.includes('UNAVAILABLE') && text.includes('injected by the test') && text.includes('v1/agents'),
			`banner text: ${text}`);
		assertEq(await page.evaluate(() => document.body.dataset.state), 'error', 'body data-state');
		const kept = await page.$$eval('#agents tbody tr[data-node]', els => els.length);
		assertEq(kept, agents.agents.length, 'the agents panel keeps the last good data');
		await page.unroute('**/v1/agents');
		// No answer at all (connection refused, proxy down): UNREACHABLE.
		await page.route('**/v1/status', route => route.abort('connectionrefused'));
		n = await refreshes();
		await page.click('#refresh-now');
		await waitRefreshAfter(n);
		const text2 = await page.textContent('#banner');
		assert(text2.includes('UNREACHABLE') && text2.includes('v1/status') && !text2.includes('v1/agents'),
			`banner text: ${text2}`);
		await page.unroute('**/v1/status');
		n = await refreshes();
		await page.click('#refresh-now');
		await waitRefreshAfter(n);
		assert(!(await page.isVisible('#banner')), 'banner still visible after recovery');
	});

	await check('a real 400 from the controller reaches the banner', async () => {
		// The select cannot produce a bad value; forge one as a user editing the DOM could.
		await page.evaluate(() => {
			const s = document.getElementById('f-severity');
			const o = document.createElement('option'); o.value = 'loud'; o.textContent = 'loud'; s.appendChild(o);
			s.value = 'loud';
		});
		await page.click('#apply');
		await page.waitForSelector('#banner.visible', { timeout: 10000 });
		const text = await page.textContent('#banner');
		assert(/400/.test(text) && /BAD_PARAMETER/.test(text), `banner text: ${text}`);
		await page.evaluate(() => { const s = document.getElementById('f-severity'); s.removeChild(s.lastChild); });
		await page.click('#clear');
		await page.waitForSelector('#banner', { state: 'hidden', timeout: 10000 });
	});

	await check('live refresh every 5 s, and the pause toggle stops it', async () => {
		assertEq(await page.getAttribute('#pause', 'aria-pressed'), 'true', 'paused at this point');
		let n = await refreshes();
		await sleep(5600);
		assertEq(await refreshes(), n, 'refreshes while paused');
		await page.click('#pause');          // resume: refreshes at once, then every 5 s
		assertEq(await page.getAttribute('#pause', 'aria-pressed'), 'false', 'resumed');
		await waitRefreshAfter(n);
		n = await refreshes();
		const t0 = Date.now();
		await waitRefreshAfter(n);
		const dt = Date.now() - t0;
		assert(dt > 4500 && dt < 15000, `next refresh after ${dt} ms, want 5000 plus one round`);
	});

	await check('no page errors and no requests leave the controller', async () => {
		assertEq(pageErrors, [], 'uncaught page errors');
		assertEq(foreign, [], 'requests to other origins');
	});

	if (process.env.TAPIO_SCREENSHOT === '1') {
		await check(`screenshot ${path.relative(SOURCE_DIR, SCREENSHOT)}`, async () => {
			if (!external) {
				// Show a live fleet: the same 5 nodes reconnect at a low rate while the picture is taken.
				const lg = start(path.join(process.env.TAPIO_BIN_DIR, 'tapio-loadgen'), ['--controller', ingestAddr,
					'--agents', String(AGENTS), '--rate', '60', '--duration', '60'], 'tapio-loadgen (screenshot)');
				await waitFor('5 connected agents with a heartbeat', async () => {
					const a = await getJSON(base, 'v1/agents');
					return a.agents.filter(x => x.connected && typeof x.last_heartbeat_age_s === 'number').length === AGENTS;
				}, 20000).catch(e => { throw new Error(`${e.message}\n${lg.output}`); });
			}
			let n = await refreshes();
			await waitRefreshAfter(n);
			n = await refreshes();
			await waitRefreshAfter(n);
			await page.evaluate(() => document.activeElement && document.activeElement.blur());
			await page.screenshot({ path: SCREENSHOT, clip: { x: 0, y: 0, width: 1400, height: 900 } });
			log('wrote', SCREENSHOT);
		});
	}
}

let fatal = null;
const onSignal = sig => { fatal = new Error(`interrupted by ${sig}`); cleanup().then(() => process.exit(130)); };
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

async function cleanup() {
	if (browser) await browser.close().catch(() => {});
	browser = null;
	await stopAll();
	const ctl = children.find(c => c.label === 'tapio-controller');
	if (ctl && failed) log('controller output:\n' + ctl.output);
	if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
	tmpDir = null;
}

try {
	await main();
} catch (e) {
	fatal = e;
}
if (fatal) fail('setup', fatal && fatal.stack || fatal);
await cleanup();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
