'use strict';
/*
 * contrib/node/promfork.js against a scripted promfork on a Unix socket
 * (node --test): the parts of the API contract the daemon may not have yet
 * (a preferred slot, "bind", retire) and every error path, which the real
 * daemon cannot be made to take on demand.  Loopback and a temporary
 * directory only; every server is closed.
 */

const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const CLIENT = path.join(process.env.PROMFORK_SOURCE || path.join(__dirname, '..', '..'), 'contrib', 'node', 'promfork.js');

/* A fresh copy of the client (its per-process state reset) and its log. */
function client() {
	delete require.cache[require.resolve(CLIENT)];
	const c = require(CLIENT);
	c.logged = [];
	c.setLogger((level, msg) => c.logged.push(`${level}: ${msg}`));
	return c;
}

/* A fake promfork: handler(req, body) answers; every request is kept. */
async function daemon(t, handler, name) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'promfork-node-'));
	const sock = name || path.join(dir, 's');
	const seen = [];
	const server = http.createServer((req, res) => {
		let body = '';
		req.on('data', (c) => (body += c));
		req.on('end', () => {
			const r = { method: req.method, url: req.url, body: body ? JSON.parse(body) : null };
			seen.push(r);
			handler(r, res);
		});
	});
	await new Promise((resolve) => server.listen(name ? '\0' + name.slice(1) : sock, resolve));
	t.after(() => {
		server.closeAllConnections();
		server.close();
		fs.rmSync(dir, { recursive: true, force: true });
	});
	return { sock, seen };
}

function answer(res, status, doc) {
	res.writeHead(status, { 'Content-Type': 'application/json' }).end(doc === undefined ? '' : JSON.stringify(doc));
}

function freePort() {
	return new Promise((resolve) => {
		const s = net.createServer().listen(0, '127.0.0.1', () => {
			const { port } = s.address();
			s.close(() => resolve(port));
		});
	});
}

function get(port) {
	return new Promise((resolve, reject) => {
		http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
			let body = '';
			res.on('data', (c) => (body += c));
			res.on('end', () => resolve({ status: res.statusCode, body }));
		}).on('error', reject);
	});
}

const registry = { contentType: 'text/plain; version=0.0.4; charset=utf-8', metrics: async () => 'x_total 7\n' };

test('without PROMFORK_SOCKET: null, said once', async () => {
	delete process.env.PROMFORK_SOCKET;
	const c = client();
	assert.strictEqual(await c.register(), null);
	assert.strictEqual(await c.serve({ registry }), null);
	assert.strictEqual(await c.retire(null), false);
	assert.strictEqual(await c.close(), false);
	assert.deepStrictEqual(await c.leases(), []);
	assert.strictEqual(c.logged.length, 1);
	assert.match(c.logged[0], /^info: PROMFORK_SOCKET is not set/);
});

test('register sends NODE_APP_INSTANCE as the slot and reads the answer', async (t) => {
	const d = await daemon(t, (r, res) => answer(res, 201, { worker: 2, port: 9402, target: 'h:9402', bind: '127.0.0.1' }));
	process.env.NODE_APP_INSTANCE = '2';
	t.after(() => delete process.env.NODE_APP_INSTANCE);
	const c = client();
	const lease = await c.register({ socketPath: d.sock, labels: { role: 7 } });
	assert.deepStrictEqual(d.seen[0], { method: 'POST', url: '/v1/workers', body: { slot: 2, labels: { role: '7' } } });
	assert.strictEqual(lease.worker, 2);
	assert.strictEqual(lease.port, 9402);
	assert.strictEqual(lease.target, 'h:9402');
	assert.strictEqual(lease.bind, '127.0.0.1');
	assert.strictEqual(lease.pid, process.pid);
	assert.strictEqual(lease.created, true);
	// slot: null sends none; a slot that is not an index is not sent
	await c.register({ socketPath: d.sock, slot: null });
	await c.register({ socketPath: d.sock, slot: 'x' });
	assert.deepStrictEqual([d.seen[1].body, d.seen[2].body], [{}, {}]);
});

test('a promfork without slots: 400 naming "slot", asked again without it', async (t) => {
	const d = await daemon(t, (r, res) => {
		if ('slot' in r.body) return answer(res, 400, { error: 'unknown field "slot": only "pid" and "labels" are known' });
		answer(res, 200, { worker: 0, port: 9400, target: 'h:9400' });
	});
	const c = client();
	const lease = await c.register({ socketPath: d.sock, slot: 3, pid: 1234 });
	assert.deepStrictEqual(d.seen.map((r) => r.body), [{ pid: 1234, slot: 3 }, { pid: 1234 }]);
	assert.strictEqual(lease.worker, 0);
	assert.strictEqual(lease.bind, null);
	assert.strictEqual(lease.created, false);
});

test('other refusals are errors with their status, not retried', async (t) => {
	const d = await daemon(t, (r, res) => answer(res, 400, { error: 'bad label name "1x"' }));
	const c = client();
	await assert.rejects(c.register({ socketPath: d.sock, slot: 1, labels: { '1x': 'a' } }),
		(e) => e instanceof c.PromforkError && e.status === 400 && /bad label name/.test(e.message));
	assert.strictEqual(d.seen.length, 1);
});

test('malformed and oversized answers are refused', async (t) => {
	const answers = [{ worker: 'one', port: 9400 }, { worker: 0, port: 70000 }, null, { worker: 0, port: 9400, target: 'x'.repeat(70000) }];
	const d = await daemon(t, (r, res) => answer(res, 201, answers.shift()));
	const c = client();
	for (let i = 0; i < 4; i++)
		await assert.rejects(c.register({ socketPath: d.sock, slot: null }), /malformed answer|over 65536 bytes/);
});

test('an unreachable promfork is a PromforkError without status', async () => {
	const c = client();
	await assert.rejects(c.register({ socketPath: path.join(os.tmpdir(), 'promfork-none', 's') }),
		(e) => e instanceof c.PromforkError && e.status === null);
});

test('serve on promfork\'s bind address; close retires while the port still answers', async (t) => {
	const port = await freePort();
	let finalScrape = null;
	const d = await daemon(t, (r, res) => {
		if (r.url === '/v1/workers') return answer(res, 201, { worker: 1, port, target: `127.0.0.1:${port}`, bind: '127.0.0.1' });
		// retire: promfork scrapes the worker once more, then answers
		get(port).then((g) => {
			finalScrape = g;
			answer(res, 204);
		});
	});
	const c = client();
	const [a, b] = await Promise.all([c.serve({ socketPath: d.sock, registry }), c.serve({ socketPath: d.sock, registry })]);
	assert.strictEqual(a, b, 'two calls share one registration');
	assert.strictEqual(d.seen.length, 1);
	assert.deepStrictEqual(await get(port), { status: 200, body: 'x_total 7\n' });
	assert.strictEqual(await c.close(), true);
	assert.deepStrictEqual(d.seen[1], { method: 'POST', url: '/v1/workers/1/retire', body: null });
	assert.deepStrictEqual(finalScrape, { status: 200, body: 'x_total 7\n' });
	await assert.rejects(get(port), /ECONNREFUSED/);
});

test('retire: 404 and 405 ignored silently, other errors logged, never longer than the timeout', async (t) => {
	const statuses = [404, 405, 500];
	const d = await daemon(t, (r, res) => {
		if (statuses.length) return answer(res, statuses.shift(), { error: 'no' });
		// the last one never answers
	});
	const c = client();
	const lease = new c.Lease({ worker: 4, port: 9404 }, process.pid, {}, true, d.sock);
	assert.strictEqual(await lease.retire(), false);
	assert.strictEqual(await lease.retire(), false);
	assert.deepStrictEqual(c.logged, []);
	assert.strictEqual(await lease.retire(), false);
	assert.match(c.logged[0], /^warn: retire: .*500/);
	const t0 = Date.now();
	assert.strictEqual(await c.retire(lease, { timeout: 300 }), false);
	const took = Date.now() - t0;
	assert.ok(took >= 290 && took < 1500, `retire gave up after ${took} ms`);
	const t1 = Date.now();
	assert.strictEqual(await lease.retire(), false);
	assert.ok(Date.now() - t1 < 2600, 'the default wait is about 2 s');
});

test('a port already taken: the lease is released, the error thrown', async (t) => {
	const holder = net.createServer();
	await new Promise((resolve) => holder.listen(0, '127.0.0.1', resolve));
	t.after(() => holder.close());
	const port = holder.address().port;
	const d = await daemon(t, (r, res) => (r.method === 'POST' ? answer(res, 201, { worker: 5, port, bind: '127.0.0.1' }) : answer(res, 204)));
	const c = client();
	await assert.rejects(c.serve({ socketPath: d.sock, registry, slot: null }), /EADDRINUSE/);
	assert.deepStrictEqual(d.seen[1], { method: 'DELETE', url: '/v1/workers/5', body: null });
});

test('range exhausted (503) with retry: null now, served once a port frees', async (t) => {
	const port = await freePort();
	let calls = 0;
	const d = await daemon(t, (r, res) => (++calls < 2 ? answer(res, 503, { error: 'port range exhausted' }) : answer(res, 201, { worker: 0, port, bind: '127.0.0.1' })));
	const c = client();
	assert.strictEqual(await c.serve({ socketPath: d.sock, registry, retry: 10 }), null);
	const deadline = Date.now() + 5000;
	let got = null;
	while (Date.now() < deadline && !got) {
		await new Promise((r) => setTimeout(r, 100));
		got = await get(port).catch(() => null);
	}
	assert.deepStrictEqual(got, { status: 200, body: 'x_total 7\n' });
	await c.close();
	// without retry a 503 is an error
	const c2 = client();
	calls = 0;
	await assert.rejects(c2.serve({ socketPath: d.sock, registry }), (e) => e.status === 503);
});

test('an abstract socket ("@name")', async (t) => {
	const name = `@promfork-node-test-${process.pid}`;
	const d = await daemon(t, (r, res) => answer(res, 201, { worker: 0, port: 9400 }), name);
	const c = client();
	const lease = await c.register({ socketPath: d.sock, slot: null });
	assert.strictEqual(lease.target, 'localhost:9400');
	assert.strictEqual(await c.release(lease), true);
});
