// What a Node.js worker thread costs in mappings, address space and resident memory: the shape the
// issue's 37-46 maps per isolate were measured in (a Node environment per isolate, on its own
// thread). Each worker instantiates the plugin module (if one is given) and calls its on_request
// REQUESTS times; the main thread reads its own /proc/self/maps and status after each step.
//
//   node bench/calibrate/node-workers.js WORKERS STEP REQUESTS [plugin.wasm]
//
// Prints one line per step and a last line with the per-worker means over the steps after the
// first (the first carries Node's one-time costs). Ends by itself.
'use strict';
const { Worker } = require('worker_threads');
const fs = require('fs');
const [workers, step, requests] = process.argv.slice(2, 5).map(Number);
const wasmFile = process.argv[5];
if (!(workers > 0 && step > 0 && requests >= 0)) {
  console.error('usage: node node-workers.js WORKERS STEP REQUESTS [plugin.wasm]');
  process.exit(2);
}
const maps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1;
const kib = (key) =>
  Number(fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(key + ':\\s+(\\d+)'))[1]);
const worker = `
const { parentPort, workerData } = require('worker_threads');
if (workerData.bytes.length) {
  const plugin = new WebAssembly.Instance(new WebAssembly.Module(workerData.bytes), {}).exports;
  const request = Buffer.from('GET /api/v1/items HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n');
  for (let i = 0; i < workerData.requests; i++) {
    new Uint8Array(plugin.memory.buffer).set(request, 1024);
    plugin.on_request(1024, request.length);
  }
}
parentPort.postMessage('ready');
setInterval(() => {}, 1 << 30);`;
const bytes = wasmFile ? fs.readFileSync(wasmFile) : new Uint8Array(0);
const start = () => new Promise((resolve, reject) => {
  const w = new Worker(worker, { eval: true, workerData: { bytes, requests } });
  w.once('message', resolve);
  w.once('error', reject);
});
(async () => {
  console.log(`node ${process.version}, V8 ${process.versions.v8}, ` +
              `${wasmFile ? 'plugin ' + wasmFile : 'no plugin'}, ${requests} requests per worker`);
  let last = { maps: maps(), vm: kib('VmSize'), rss: kib('VmRSS') };
  const per = [];
  for (let n = 0; n < workers;) {
    const k = Math.min(step, workers - n);
    await Promise.all(Array.from({ length: k }, start));
    n += k;
    const now = { maps: maps(), vm: kib('VmSize'), rss: kib('VmRSS') };
    const d = { maps: (now.maps - last.maps) / k, vm: (now.vm - last.vm) / k / 1024,
                rss: (now.rss - last.rss) / k / 1024 };
    if (n > k) per.push(d);
    console.log(`${n} workers: maps ${now.maps}, per worker +${d.maps.toFixed(1)} maps, ` +
                `+${d.vm.toFixed(0)} MiB VmSize, +${d.rss.toFixed(1)} MiB VmRSS`);
    last = now;
  }
  const mean = (k) => per.reduce((s, d) => s + d[k], 0) / Math.max(1, per.length);
  console.log(`per worker: ${mean('maps').toFixed(1)} maps (min ${Math.min(...per.map(d => d.maps)).toFixed(1)}, ` +
              `max ${Math.max(...per.map(d => d.maps)).toFixed(1)}), ${mean('vm').toFixed(0)} MiB VmSize, ` +
              `${mean('rss').toFixed(1)} MiB VmRSS`);
  process.exit(0);
})().catch((e) => { console.error(`failed after ${maps()} maps: ${e.message}`); process.exit(1); });
