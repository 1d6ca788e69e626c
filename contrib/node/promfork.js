'use strict';
/*
 * Client for promfork's registration API (Node.js standard library only).
 *
 * promfork exports PROMFORK_SOCKET, the path of a Unix socket that speaks
 * HTTP/1.1 + JSON.  Each worker process registers itself there and gets a
 * lease: a stable `worker` slot number and the TCP port on which it serves
 * its own /metrics.  The lease ends by itself when the process exits.
 *
 *   const promfork = require('./promfork');
 *   const lease = await promfork.serve();   // register + serve prom-client's registry
 *   ...
 *   await promfork.close();                 // before a graceful exit: retire, stop serving
 *
 * Without PROMFORK_SOCKET, register() and serve() resolve to null (logged
 * once, at info), so the same app runs unchanged without promfork.
 */

const http = require('node:http');

const SOCKET_ENV = 'PROMFORK_SOCKET';
const ADDR_ENV = 'PROMFORK_METRICS_ADDR'; // default listen address of serve()
const SLOT_ENV = 'NODE_APP_INSTANCE'; // PM2's worker index: the preferred slot
const MAX_ANSWER = 64 * 1024;

let disabledLogged = false;
let served = null; // { lease, server } of the metrics server of this process
let serving = null; // the serve() under way, so that two calls share it

/* Where messages go; replace with your logger's (level, message) function. */
let logger = (level, msg) => {
	if (level !== 'debug') process.stderr.write(`promfork: ${msg}\n`);
};

function setLogger(fn) {
	logger = fn;
}

/* promfork answered an error, or could not be reached: status is the HTTP
 * status (null when the socket could not be used). */
class PromforkError extends Error {
	constructor(message, status = null) {
		super(message);
		this.name = 'PromforkError';
		this.status = status;
	}
}

/* One registered worker. created is false when promfork returned the lease
 * the pid already had (200). bind is the address promfork asks the worker to
 * serve on, or null (all interfaces). */
class Lease {
	constructor(doc, pid, labels, created, socketPath) {
		this.worker = doc.worker;
		this.port = doc.port;
		this.target = doc.target || `localhost:${doc.port}`;
		this.bind = typeof doc.bind === 'string' && doc.bind ? doc.bind : null;
		this.pid = pid;
		this.labels = labels;
		this.created = created;
		this.socketPath = socketPath;
	}

	retire(opts) {
		return retire(this, opts);
	}

	release(opts) {
		return release(this, opts);
	}
}

function socketPath(path) {
	return path || process.env[SOCKET_ENV] || null;
}

/* True when a promfork socket is known; logs once per process when not. */
function enabled(path) {
	if (socketPath(path)) return true;
	if (!disabledLogged) {
		disabledLogged = true;
		logger('info', `${SOCKET_ENV} is not set: running without promfork (no per-worker metrics port)`);
	}
	return false;
}

/* One request on the socket; resolves to { status, doc }, rejects with a
 * PromforkError for a status >= 400 or when promfork cannot be reached. */
function request(path, method, url, body, timeoutMs) {
	const what = `${method} ${url}`;
	return new Promise((resolve, reject) => {
		const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
		const headers = { Accept: 'application/json', Connection: 'close' };
		if (data) {
			headers['Content-Type'] = 'application/json';
			headers['Content-Length'] = data.length;
		} else if (method === 'POST') {
			headers['Content-Length'] = 0;
		}
		// "@name" is a Linux abstract socket, as in the Python client.
		const sock = path.startsWith('@') ? '\0' + path.slice(1) : path;
		let settled = false;
		const fail = (msg, status = null) => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			req.destroy();
			reject(new PromforkError(msg, status));
		};
		// One deadline for the whole exchange, not per socket event.
		const timer = setTimeout(() => fail(`promfork at ${path}: ${what}: no answer in ${timeoutMs} ms`), timeoutMs);
		const req = http.request({ socketPath: sock, method, path: url, headers, agent: false }, (res) => {
			const chunks = [];
			let size = 0;
			res.on('data', (c) => {
				size += c.length;
				if (size > MAX_ANSWER) return fail(`promfork: ${what}: answer over ${MAX_ANSWER} bytes`);
				chunks.push(c);
			});
			res.on('error', (e) => fail(`promfork at ${path}: ${what}: ${e.message}`));
			res.on('end', () => {
				if (settled) return;
				const raw = Buffer.concat(chunks).toString('utf8');
				let doc = null;
				try {
					doc = raw.trim() ? JSON.parse(raw) : null;
				} catch (e) {
					doc = null;
				}
				if (res.statusCode >= 400) {
					const msg = (doc && typeof doc.error === 'string' && doc.error) || raw.trim() || http.STATUS_CODES[res.statusCode];
					return fail(`promfork: ${what}: ${res.statusCode} ${msg}`, res.statusCode);
				}
				settled = true;
				clearTimeout(timer);
				resolve({ status: res.statusCode, doc });
			});
		});
		req.on('error', (e) => fail(`promfork at ${path}: ${what}: ${e.message}`));
		req.end(data || undefined);
	});
}

function preferredSlot(slot) {
	if (slot === null) return null;
	if (slot === undefined) slot = process.env[SLOT_ENV];
	if (typeof slot === 'string' && /^[0-9]{1,9}$/.test(slot)) slot = Number(slot);
	return Number.isInteger(slot) && slot >= 0 ? slot : null;
}

function isPort(n) {
	return Number.isInteger(n) && n > 0 && n < 65536;
}

/*
 * Registers pid (default: this process) and resolves to its Lease, or to
 * null without PROMFORK_SOCKET.  slot is the preferred worker slot (default
 * $NODE_APP_INSTANCE, PM2's worker index; null for none).  Rejects with a
 * PromforkError when promfork refuses (403, 503 = range exhausted, ...).
 */
async function register(opts = {}) {
	const path = socketPath(opts.socketPath);
	if (!path) {
		enabled();
		return null;
	}
	const timeout = opts.timeout || 5000;
	const body = {};
	if (opts.pid !== undefined && opts.pid !== null) body.pid = Number(opts.pid);
	let labels = null;
	if (opts.labels && Object.keys(opts.labels).length) {
		labels = {};
		for (const [k, v] of Object.entries(opts.labels)) labels[String(k)] = String(v);
		body.labels = labels;
	}
	const slot = preferredSlot(opts.slot);
	if (slot !== null) body.slot = slot;
	let answer;
	try {
		answer = await request(path, 'POST', '/v1/workers', body, timeout);
	} catch (e) {
		// A promfork older than preferred slots refuses the field: ask
		// again without it and take its usual choice.
		if (e.status !== 400 || !('slot' in body) || !/slot/.test(e.message)) throw e;
		delete body.slot;
		logger('debug', 'promfork does not take a preferred slot; registering without one');
		answer = await request(path, 'POST', '/v1/workers', body, timeout);
	}
	const doc = answer.doc;
	if (!doc || !Number.isInteger(doc.worker) || doc.worker < 0 || !isPort(doc.port))
		throw new PromforkError(`promfork: POST /v1/workers: malformed answer ${JSON.stringify(doc)}`, answer.status);
	const pid = Number.isInteger(doc.pid) ? doc.pid : body.pid || process.pid;
	const lease = new Lease(doc, pid, doc.labels || labels || {}, answer.status === 201, path);
	logger('debug', `registered worker ${lease.worker} port ${lease.port} pid ${pid}`);
	return lease;
}

/*
 * Tells promfork this worker is about to exit gracefully, so that it scrapes
 * the worker once more while its metrics server still runs.  Waits at most
 * timeout ms (default 2000): an exit is never held up longer.  Resolves to
 * true when promfork took the final scrape, false otherwise (a promfork
 * without retire answers 404 or 405: ignored silently).
 */
async function retire(lease, opts = {}) {
	if (!lease) return false;
	const path = socketPath(opts.socketPath) || lease.socketPath;
	if (!path) return false;
	try {
		await request(path, 'POST', `/v1/workers/${lease.worker}/retire`, undefined, opts.timeout || 2000);
		return true;
	} catch (e) {
		if (e.status !== 404 && e.status !== 405) logger('warn', `retire: ${e.message}`);
		return false;
	}
}

/* Ends a lease early (promfork also ends it when the process exits).
 * Resolves to true, or false when it was already gone (404). */
async function release(lease, opts = {}) {
	if (!lease) return false;
	const path = socketPath(opts.socketPath) || lease.socketPath;
	if (!path) return false;
	try {
		await request(path, 'DELETE', `/v1/workers/${lease.worker}`, undefined, opts.timeout || 5000);
	} catch (e) {
		if (e.status === 404) return false;
		throw e;
	}
	return true;
}

/* All current leases (GET /v1/workers); [] without promfork. */
async function leases(opts = {}) {
	const path = socketPath(opts.socketPath);
	if (!path) return [];
	return (await request(path, 'GET', '/v1/workers', undefined, opts.timeout || 5000)).doc || [];
}

function listen(server, port, host) {
	return new Promise((resolve, reject) => {
		const onError = (e) => reject(e);
		server.once('error', onError);
		server.listen({ port, host, exclusive: true }, () => {
			server.removeListener('error', onError);
			resolve();
		});
	});
}

/* The address to serve on: promfork's bind when it gave one, else addr,
 * else $PROMFORK_METRICS_ADDR, else every IPv4 interface. */
function serveAddress(lease, addr) {
	return lease.bind || addr || process.env[ADDR_ENV] || '0.0.0.0';
}

/*
 * Registers this process and serves registry (default: prom-client's global
 * registry, loaded only here) on its leased port, at /metrics.  Call it in
 * each worker, never in a cluster master.  Calling it again in the same
 * process returns the same lease.  Resolves to null without promfork.
 *
 * retry > 0 (seconds): when the port range is exhausted (503, e.g. while
 * old and new workers overlap during a reload), resolve to null and keep
 * trying once a second for that long, in the background.
 */
function serve(opts = {}) {
	if (served) return Promise.resolve(served.lease);
	if (!serving) serving = startServing(opts).finally(() => { serving = null; });
	return serving;
}

async function startServing(opts) {
	let lease;
	try {
		lease = await register(opts);
	} catch (e) {
		if (e.status !== 503 || !(opts.retry > 0)) throw e;
		logger('warn', `${e.message}; retrying for ${opts.retry} s in the background`);
		retryLater(opts, Date.now() + opts.retry * 1000);
		return null;
	}
	if (!lease) return null;
	const registry = opts.registry || require('prom-client').register;
	const server = http.createServer((req, res) => {
		const url = (req.url || '/').split('?')[0];
		if (url !== '/metrics' && url !== '/') {
			res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
			return;
		}
		Promise.resolve(registry.metrics()).then(
			(text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
			(e) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${e.message}\n`));
	});
	// Metrics must never keep a worker alive that has nothing else to do.
	server.unref();
	const host = serveAddress(lease, opts.addr);
	try {
		await listen(server, lease.port, host);
	} catch (e) {
		// Do not keep a slot whose port nobody serves.
		await release(lease).catch(() => {});
		throw e;
	}
	served = { lease, server };
	logger('info', `worker ${lease.worker} (pid ${process.pid}) serving metrics on ${host}:${lease.port} (target ${lease.target})`);
	return lease;
}

function retryLater(opts, deadline) {
	const t = setTimeout(async () => {
		if (served) return;
		try {
			if (await serve(Object.assign({}, opts, { retry: 0 }))) return;
		} catch (e) {
			if (e.status !== 503) {
				logger('error', `giving up on a metrics port: ${e.message}`);
				return;
			}
		}
		if (Date.now() < deadline) retryLater(opts, deadline);
		else logger('error', 'giving up on a metrics port: port range still exhausted');
	}, 1000);
	t.unref();
}

/*
 * Before a graceful exit: retire the lease of serve() (promfork takes its
 * final scrape from the still running metrics server), then close that
 * server.  Bounded by the retire timeout; resolves to the retire result.
 */
async function close(opts = {}) {
	if (!served) return false;
	const { lease, server } = served;
	served = null;
	const retired = await retire(lease, opts);
	await new Promise((resolve) => {
		server.close(() => resolve());
		server.closeAllConnections();
	});
	return retired;
}

module.exports = {
	Lease,
	PromforkError,
	SOCKET_ENV,
	enabled,
	register,
	retire,
	release,
	leases,
	serve,
	close,
	setLogger,
};
