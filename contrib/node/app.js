'use strict';
/*
 * Example app for promfork: a tiny HTTP server whose workers each count in
 * prom-client's default registry and serve it on a port leased from promfork.
 *
 *   /            -> "hello from worker <pid>"
 *   /slow?ms=N   -> waits N milliseconds (at most 10 s)
 *
 * With the cluster module (this file is the master and its workers):
 *   promfork --port-range 9400-9463 --sd-file ... -- node app.js
 * Under PM2 cluster mode (PM2's God process is the master; this file runs
 * only as a worker, NODE_APP_INSTANCE is its index):
 *   promfork --port-range 9400-9463 --sd-file ... -- \
 *       pm2-runtime start app.js -i 4 --kill-timeout 5000
 *
 * Environment: PORT (default 3000), HOST (default all), WEB_CONCURRENCY
 * (cluster workers, default 4), PROM_CLIENT_AGGREGATOR_PORT (cluster only:
 * the master also serves prom-client's own AggregatorRegistry answer there,
 * for comparison).  SIGHUP to the cluster master replaces every worker one
 * by one (a rolling reload); SIGTERM or SIGINT stops them gracefully.
 */

const cluster = require('node:cluster');
const http = require('node:http');
const client = require('prom-client');
const promfork = require('./promfork');

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || undefined;
const AGGREGATOR_PORT = Number(process.env.PROM_CLIENT_AGGREGATOR_PORT || 0);

// Under PM2 (pm_id is set) this file is always a worker, in fork mode too.
if (cluster.isPrimary && process.env.pm_id === undefined) master();
else worker();

function master() {
	const n = Number(process.env.WEB_CONCURRENCY || 4);
	const slots = new Map(); // worker index -> cluster worker
	const replaced = new Set(); // old workers being stopped by a reload
	let stopping = false;
	let reloading = false;

	// Each worker gets its index as NODE_APP_INSTANCE, as PM2 does, and
	// sends it to promfork as its preferred slot.
	function fork(i) {
		const w = cluster.fork({ NODE_APP_INSTANCE: String(i) });
		w.index = i;
		w.started = Date.now();
		slots.set(i, w);
		return w;
	}

	cluster.on('exit', (w, code, sig) => {
		if (replaced.delete(w) || stopping || slots.get(w.index) !== w) return;
		console.error(`worker ${w.index} (pid ${w.process.pid}) died (${sig || code}); starting another`);
		// A worker that dies as it starts is not restarted in a busy loop.
		const wait = Date.now() - w.started < 1000 ? 1000 : 0;
		setTimeout(() => stopping || slots.get(w.index) !== w || fork(w.index), wait);
	});

	// A rolling reload: one index at a time, the new worker first, the old
	// one stopped (gracefully: it retires its lease) once the new one serves.
	async function reload() {
		if (reloading || stopping) return;
		reloading = true;
		for (const [i, old] of [...slots]) {
			const w = fork(i);
			await new Promise((resolve) => {
				w.once('listening', resolve);
				w.once('exit', resolve);
			});
			replaced.add(old);
			await stopWorker(old);
		}
		reloading = false;
	}

	function stopWorker(w) {
		return new Promise((resolve) => {
			if (w.isDead()) return resolve();
			w.once('exit', resolve);
			w.process.kill('SIGTERM');
		});
	}

	async function stop() {
		stopping = true;
		await Promise.all([...Object.values(cluster.workers)].map(stopWorker));
		process.exit(0);
	}

	process.on('SIGHUP', reload);
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
	promfork.enabled(); // says it once here when promfork is not there

	if (AGGREGATOR_PORT) {
		const aggregator = new client.AggregatorRegistry();
		http.createServer((req, res) => {
			aggregator.clusterMetrics().then(
				(text) => res.writeHead(200, { 'Content-Type': aggregator.contentType }).end(text),
				(e) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${e.message}\n`));
		}).listen(AGGREGATOR_PORT, '127.0.0.1');
	}
	for (let i = 0; i < n; i++) fork(i);
}

function worker() {
	const requests = new client.Counter({ name: 'app_requests_total', help: 'HTTP requests handled.', labelNames: ['path'] });
	const latency = new client.Histogram({ name: 'app_request_duration_seconds', help: 'Time spent handling a request.' });
	client.collectDefaultMetrics();
	if (AGGREGATOR_PORT) new client.AggregatorRegistry(); // answers the master's requests

	const server = http.createServer((req, res) => {
		const end = latency.startTimer();
		const url = new URL(req.url, 'http://x');
		let path = url.pathname;
		const reply = (status, body) => {
			res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(body);
			requests.inc({ path });
			end();
		};
		if (path === '/') {
			reply(200, `hello from worker ${process.pid}\n`);
		} else if (path === '/slow') {
			const ms = Math.min(Math.max(Number(url.searchParams.get('ms')) || 100, 0), 10000);
			setTimeout(() => reply(200, `slept ${ms} ms in worker ${process.pid}\n`), ms);
		} else {
			path = 'other'; // keep the label's cardinality bounded
			reply(404, 'not found\n');
		}
	});

	// Serving requests matters more than metrics: a worker without a
	// metrics port logs why and goes on.  retry: during a reload old and new
	// workers overlap; if the range cannot hold both, keep asking.
	promfork.serve({ retry: 60 }).catch((e) => console.error(`promfork: worker runs without a metrics port: ${e.message}`));
	server.listen(PORT, HOST);

	// Graceful exit (PM2 stop or reload, the master's SIGTERM): stop taking
	// requests, let promfork scrape this worker a last time, then go.
	let exiting = false;
	async function shutdown() {
		if (exiting) return;
		exiting = true;
		server.close();
		await promfork.close();
		process.exit(0);
	}
	process.on('SIGINT', shutdown);
	process.on('SIGTERM', shutdown);
	process.on('message', (m) => m === 'shutdown' && shutdown()); // PM2 --shutdown-with-message
}
