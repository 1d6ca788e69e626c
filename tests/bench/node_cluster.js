'use strict';
/*
 * The cluster app of bench_node_cluster.py: contrib/node/app.js (master and
 * workers, both scrape paths: promfork.js in every worker, prom-client's
 * AggregatorRegistry in the master), with BENCH_SERIES more counter series
 * in every worker: 10 families, BENCH_SERIES / 10 paths each, as
 * bench_fanout serves.  BENCH_APP is the path of app.js.
 */
const cluster = require('node:cluster');
const path = require('node:path');

const app = process.env.BENCH_APP;
if (!cluster.isPrimary) {
	const client = require(require.resolve('prom-client', { paths: [path.dirname(app)] }));
	const paths = Math.floor(Number(process.env.BENCH_SERIES || 1000) / 10);
	const w = Number(process.env.NODE_APP_INSTANCE || 0);
	for (let f = 0; f < 10; f++) {
		const c = new client.Counter({ name: `bench_family_${f}`, help: `Family ${f}.`, labelNames: ['path'] });
		for (let p = 0; p < paths; p++) c.inc({ path: `/api/v1/item/${p}` }, w + f + p + 1);
	}
}
require(app);
