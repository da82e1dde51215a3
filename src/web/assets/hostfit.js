// hostfit's page: reads the daemon's API (same origin, so the Unix socket, an ssh -L tunnel or the
// TCP listener's cookie all work unchanged) and follows GET /v1/events by long poll. Plain DOM
// code, no framework: the page is three views of four JSON documents, and nothing here needs to
// be fetched or built.
'use strict';

(() => {
  const kWindowMs = 10 * 60 * 1000;  // sparkline span
  const kSampleMs = 5000;            // sparkline resolution
  const kCpuSpanMs = 2000;           // shortest time a CPU use is measured over
  const kRefreshMs = 5000;           // workload sampling while nothing happens
  const kPollWaitS = 25;             // long-poll wait; below the api's max_long_poll
  const kMaxEvents = 100;
  const kTopologyMs = 30000;         // foreign pins and offline CPUs change rarely
  const kPalette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#e377c2', '#17becf', '#8c564b',
                    '#ff7f0e', '#bcbd22', '#393b79'];

  const model = {
    node: null,
    workloads: [],           // as /v1/workloads lists them
    placements: [],          // as /v1/placements lists them
    events: [],              // newest last, at most kMaxEvents
    seenSeq: new Set(),
    since: 0,
    samples: new Map(),      // workload name -> [{t, mem, cpu}] over the last kWindowMs
    lastCpu: new Map(),      // workload name -> {t, usec, use}: the counter's last read
    engines: null,           // GET /v1/engines' engines; null where the daemon has none
    sessions: null,          // GET /v1/sessions' sessions; null likewise
    highlight: null,         // workload whose CPUs are emphasised
    topology: null,          // GET /v1/node/topology, re-read every kTopologyMs and on placements
    topologyAt: 0,
    topologyStale: false,
  };

  // ---- small helpers -------------------------------------------------------------------------

  // The first of several dotted keys that is present: the daemon's names, then older spellings.
  function pick(obj, ...keys) {
    for (const key of keys) {
      let v = obj;
      for (const part of key.split('.')) v = v == null ? undefined : v[part];
      if (v !== undefined && v !== null) return v;
    }
    return undefined;
  }
  function list(value, ...keys) {
    if (Array.isArray(value)) return value;
    const v = value == null ? undefined : pick(value, ...keys);
    return Array.isArray(v) ? v : [];
  }
  // "0-3,8" (the kernel's list format), [0, 1] or a number -> sorted array of CPU numbers.
  function cpuList(text) {
    if (text == null) return [];
    if (Array.isArray(text)) return text.map(Number);
    if (typeof text === 'number') return [text];
    const out = [];
    for (const part of String(text).split(',')) {
      const m = part.trim().match(/^(\d+)(?:-(\d+))?$/);
      if (!m) continue;
      const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
      for (let i = a; i <= b && out.length < 65536; i++) out.push(i);
    }
    return out;
  }
  function bytes(n) {
    if (n == null || !isFinite(n)) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'style') e.style.cssText = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);  // strings become text, never HTML
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  // The first load's requests are the plain ones index.html preloads (a preload is only used by
  // a request of the same mode, credentials and cache mode); later ones bypass the HTTP cache.
  async function getJson(path, signal, preloaded) {
    const r = await fetch(path, preloaded ? {credentials: 'same-origin'} :
                                            {cache: 'no-store', credentials: 'same-origin', signal});
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r.json();
  }
  function setStatus(state, text) {
    const s = document.getElementById('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  // ---- the daemon's documents, read once into the shapes the views use -----------------------

  function workloadName(w) { return String(pick(w, 'name', 'id') ?? '?'); }
  function workloadState(w) {
    const s = String(pick(w, 'state', 'status') ?? 'UNKNOWN');
    return s.replace(/\(.*$/, '').toUpperCase();  // "KILLED(OOM)" -> "KILLED"
  }
  // The run's one-line verdict once it says more than the state ("KILLED(OOM): ...").
  function workloadVerdict(w) {
    const v = String(pick(w, 'verdict.text', 'run.verdict') ?? '');
    return v === pick(w, 'verdict.state', 'run.state') || v === pick(w, 'state') ? '' : v;
  }
  function workloadCpus(w) {
    return cpuList(pick(w, 'placement.cpus', 'cpuset', 'cpus_list', 'cpuset_cpus'));
  }

  // A workload keeps its letter and colour while it exists: a new one takes the lowest free
  // number (in name order when several come at once), so workloads coming and going do not
  // relabel the others (which redrew every row and the map).
  const marksByName = new Map();  // name -> {n, label, color}
  function workloadMarks() {
    const names = model.workloads.map(workloadName).sort();
    const live = new Set(names);
    for (const name of [...marksByName.keys()]) if (!live.has(name)) marksByName.delete(name);
    const used = new Set([...marksByName.values()].map((m) => m.n));
    let next = 0;
    for (const name of names) {
      if (marksByName.has(name)) continue;
      while (used.has(next)) next++;
      used.add(next);
      let label = '', n = next;
      do { label = String.fromCharCode(65 + (n % 26)) + label; n = Math.floor(n / 26) - 1; } while (n >= 0);
      marksByName.set(name, {n: next, label, color: kPalette[next % kPalette.length]});
    }
    return new Map(names.map((name) => [name, marksByName.get(name)]));
  }

  // Who holds each CPU: a hostfit workload, a foreign pin, or no one; offline and disallowed
  // CPUs are marked as such.
  function cpuHolders(node) {
    const holders = new Map();
    const owners = new Map();  // ledger owner -> workload name
    for (const w of model.workloads) owners.set(workloadName(w), workloadName(w));
    const ownerToName = (owner) => {
      owner = String(owner ?? '');
      if (owners.has(owner)) return owners.get(owner);
      for (const name of owners.keys()) if (owner.endsWith('/' + name)) return name;
      return owner;
    };
    const cpuSection = pick(node, 'cpu') ?? {};
    const allowedText = pick(node, 'cpus.placeable') ?? pick(cpuSection, 'placeable', 'usable');
    const allowed = allowedText == null ? null : new Set(cpuList(allowedText));
    for (const c of cpuList(pick(cpuSection, 'offline') ?? pick(node, 'offline_cpus')))
      holders.set(c, {kind: 'offline', label: 'offline'});
    const foreign = list(node, 'foreign_pins.pins', 'foreign_pins', 'foreign.pins', 'foreign');
    for (const pin of foreign) {
      for (const c of cpuList(pick(pin, 'cpus'))) {
        if (holders.has(c)) continue;
        const who = String(pick(pin, 'holder', 'cgroup', 'name') ?? 'another tool');
        holders.set(c, {kind: 'foreign', label: who + (pick(pin, 'exclusive') ? ' (exclusive)' : '')});
      }
    }
    const holds = [
      ...list(node, 'holds', 'ledger.holds', 'placements'),
      ...model.placements,
      ...model.workloads.map((w) => ({owner: workloadName(w), cpus: workloadCpus(w)})),
    ];
    for (const h of holds) {
      const name = ownerToName(pick(h, 'workload', 'name', 'owner'));
      for (const c of cpuList(pick(h, 'cpus', 'cpuset'))) {
        const prev = holders.get(c);
        if (prev && prev.kind !== 'foreign') continue;
        holders.set(c, {kind: 'workload', name, label: name});
      }
    }
    return {holders, allowed};
  }

  // Views are rebuilt on every refresh; the node or row that had the keyboard focus keeps it.
  function keepingFocus(rebuild) {
    const active = document.activeElement;
    const key = active && (active.dataset?.node != null ? ['node', active.dataset.node] :
                           active.dataset?.workload != null ? ['workload', active.dataset.workload] : null);
    rebuild();
    if (!key || document.activeElement === active) return;
    const tag = key[0] === 'node' ? '.numa' : 'tr';
    document.querySelector(tag + '[data-' + key[0] + '="' + CSS.escape(key[1]) + '"]')?.focus();
  }

  // ---- topology ------------------------------------------------------------------------------

  let drawnTopology = '';
  function renderTopology() {
    const root = document.getElementById('topology');
    const node = model.node;
    if (!node) return;
    // Only what the map shows: an unchanged map is not rebuilt (focus, hover and memory stay).
    const drawn = JSON.stringify([node, model.placements, model.highlight,
                                  model.workloads.map((w) => [workloadName(w), workloadCpus(w)])]);
    if (drawn === drawnTopology) return;
    drawnTopology = drawn;
    const topo = pick(node, 'topology') ?? node;
    const marks = workloadMarks();
    const {holders, allowed} = cpuHolders(node);
    const numaNodes = list(topo, 'numa_nodes', 'nodes');
    const cores = list(topo, 'cores');
    let packages = list(topo, 'packages');
    if (packages.length === 0) packages = [{id: 0}];
    const nodeIds = numaNodes.map((n) => n.id);

    const cpuCell = (c) => {
      let h = holders.get(c) ?? {kind: 'free', label: 'free'};
      if (h.kind === 'free' && allowed && !allowed.has(c)) h = {kind: 'disallowed', label: 'not allowed to hostfit'};
      const mark = h.kind === 'workload' ? marks.get(h.name) : null;
      const who = {workload: mark ? mark.label : 'W', foreign: 'F', offline: 'off', disallowed: '—', free: ''}[h.kind];
      const cell = el('span', {
        class: 'cpu' + (model.highlight && h.name !== model.highlight ? ' dim' : ''),
        'data-cpu': c, 'data-holder-kind': h.kind, 'data-holder': h.kind === 'free' ? '' : h.label,
        style: mark ? '--c:' + mark.color : null, role: 'img',
        'aria-label': 'CPU ' + c + ': ' + (h.kind === 'workload' ? 'held by ' + h.label :
                                            h.kind === 'foreign' ? 'pinned by ' + h.label : h.label),
        title: 'CPU ' + c + ' — ' + h.label,
      }, el('span', null, String(c)));
      if (who) cell.append(el('span', {class: 'who'}, who));
      return cell;
    };

    const placed = new Set();
    const coreBox = (core) => {
      const cpus = cpuList(pick(core, 'cpus'));
      cpus.forEach((c) => placed.add(c));
      return el('span', {class: 'core', title: 'core ' + (pick(core, 'core_id') ?? '?')}, ...cpus.map(cpuCell));
    };
    const numaBox = (n) => {
      const dist = list(n, 'distances');
      const info = el('div', {class: 'numa-info', role: 'tooltip', id: 'numa-info-' + n.id},
        el('div', null, 'memory ' + bytes(pick(n, 'memory_bytes', 'memory'))),
        el('div', null, 'CPUs ' + (pick(n, 'cpus') || 'none')),
        dist.length ? el('table', null,
          el('tr', null, el('th', null, 'distance to'), ...nodeIds.map((id) => el('th', null, 'node ' + id))),
          el('tr', null, el('td', null, 'node ' + n.id), ...dist.map((d) => el('td', null, String(d))))) : null);
      const nodeCores = cores.filter((c) => pick(c, 'node', 'numa_node') === n.id);
      return el('div', {class: 'numa', tabindex: '0', 'data-node': n.id, 'aria-describedby': info.id},
        el('h4', null, 'NUMA node ' + n.id + ' · ' + bytes(pick(n, 'memory_bytes', 'memory'))),
        el('div', {class: 'cores'}, ...nodeCores.map(coreBox)),
        info);
    };
    const children = packages.map((p) => {
      const ns = numaNodes.filter((n) => pick(n, 'package') === p.id ||
                                         (packages.length === 1 && pick(n, 'package') == null));
      const loose = cores.filter((c) => pick(c, 'node', 'numa_node') == null ||
                                        pick(c, 'node', 'numa_node') < 0)
                         .filter((c) => pick(c, 'package') === p.id);
      return el('div', {class: 'package', 'data-package': p.id},
        el('h3', null, 'Package ' + p.id),
        el('div', {class: 'nodes'}, ...ns.map(numaBox),
           loose.length ? el('div', {class: 'numa', tabindex: '0'}, el('h4', null, 'no NUMA node'),
                             el('div', {class: 'cores'}, ...loose.map(coreBox))) : null));
    });
    // CPUs hwloc did not place (offline ones usually): shown so that they are not forgotten.
    const rest = [...new Set([...cpuList(pick(node, 'cpu.possible')), ...holders.keys()])]
                     .filter((c) => !placed.has(c)).sort((a, b) => a - b);
    if (rest.length) {
      children.push(el('div', {class: 'package'}, el('h3', null, 'Not in the topology (offline)'),
                       el('div', {class: 'cores'}, ...rest.map(cpuCell))));
    }
    keepingFocus(() => root.replaceChildren(...children));
    renderLegend(marks);
  }

  function renderLegend(marks) {
    const items = [
      el('li', null, el('span', {class: 'swatch free'}), 'free'),
      el('li', null, el('span', {class: 'swatch foreign'}), 'F: pinned by another tool'),
      el('li', null, el('span', {class: 'swatch offline'}), 'off: offline'),
      el('li', null, el('span', {class: 'swatch disallowed'}), '—: not allowed to hostfit'),
    ];
    for (const [name, m] of marks) {
      items.push(el('li', {'data-workload': name},
                    el('span', {class: 'swatch workload', style: '--c:' + m.color}), m.label + ': ' + name));
    }
    document.getElementById('legend').replaceChildren(...items);
  }

  // ---- workloads -----------------------------------------------------------------------------

  function memoryOf(w) {
    const m = pick(w, 'memory') ?? {};
    const anon = pick(m, 'anon_bytes', 'anon') ?? 0;
    const file = pick(m, 'file_bytes', 'file') ?? 0;
    const shmem = pick(m, 'shmem_bytes', 'shmem') ?? 0;
    const kernel = pick(m, 'kernel_bytes', 'other_bytes', 'kernel') ?? 0;
    const usage = pick(m, 'usage_bytes', 'current_bytes', 'usage') ?? anon + file + kernel;
    return {
      anon, shmem, kernel, usage,
      cache: Math.max(0, file - shmem),  // file counts shmem; the bar shows them apart
      limit: pick(w, 'memory_limit_bytes', 'spec.memory_max_bytes', 'run.memory_limit_bytes') ?? pick(m, 'limit_bytes'),
      cacheBudget: pick(w, 'spec.cache_limit_bytes') ?? pick(m, 'cache_limit_bytes'),
    };
  }

  // CPU use in CPUs from the daemon's cumulative counter (cpu.usage_usec): its change over the
  // time between two reads at least kCpuSpanMs apart (closer reads, after a burst of events,
  // would measure mostly noise). Null until two reads exist, or when the daemon does not say.
  function cpuUse(w, now) {
    const usec = pick(w, 'cpu.usage_usec');
    const name = workloadName(w), prev = model.lastCpu.get(name);
    if (usec == null) { model.lastCpu.delete(name); return null; }
    if (prev && now - prev.t < kCpuSpanMs && usec >= prev.usec) return prev.use;
    const use = prev && now > prev.t && usec >= prev.usec ? (usec - prev.usec) / ((now - prev.t) * 1000) : null;
    model.lastCpu.set(name, {t: now, usec, use});
    return use;
  }
  // "0.42 of 2", "0.42 (no quota)"; "—" for the use while the daemon gives no counter.
  function cpuText(w, use) {
    const quota = pick(w, 'cpu.quota_cpus', 'spec.cpus');
    const num = (x) => String(Number(Number(x).toFixed(2)));
    return (use != null ? use.toFixed(2) : '—') + (quota != null ? ' of ' + num(quota) : ' (no quota)');
  }

  // One point per kSampleMs at most: 120 over the sparkline's 10 minutes, about one per pixel.
  function sample(now) {
    const live = new Set();
    for (const w of model.workloads) {
      const name = workloadName(w);
      live.add(name);
      const s = model.samples.get(name) ?? [];
      const point = {t: now, mem: memoryOf(w).usage, cpu: cpuUse(w, now)};
      const last = s[s.length - 1];
      if (last && now - last.t < kSampleMs) Object.assign(last, {mem: point.mem, cpu: point.cpu ?? last.cpu});
      else s.push(point);
      while (s.length && s[0].t < now - kWindowMs) s.shift();
      model.samples.set(name, s);
    }
    for (const name of [...model.samples.keys()]) if (!live.has(name)) model.samples.delete(name);
    for (const name of [...model.lastCpu.keys()]) if (!live.has(name)) model.lastCpu.delete(name);
  }

  // The sparkline's two polylines are kept and only their points change on a refresh.
  function sparkline() {
    const box = svg('svg', {class: 'spark', viewBox: '0 0 130 28', role: 'img'});
    box.append(svg('polyline', {class: 'mem-use', points: ''}), svg('polyline', {class: 'cpu-use', points: ''}));
    return box;
  }
  function drawSparkline(box, s, limit) {
    const [memLine, cpuLine] = box.children;
    if (s.length === 0) return;
    const t1 = s[s.length - 1].t, t0 = t1 - kWindowMs;
    let top = Math.max(limit ?? 0, 1), peak = 0, cpuTop = 1;
    for (const p of s) {
      top = Math.max(top, p.mem ?? 0); peak = Math.max(peak, p.mem ?? 0);
      if (p.cpu != null) cpuTop = Math.max(cpuTop, p.cpu);
    }
    const x = (t) => ((t - t0) / kWindowMs * 128 + 1).toFixed(1);
    let mem = '', cpu = '';
    for (const p of s) {
      mem += x(p.t) + ',' + (27 - (p.mem ?? 0) / top * 25).toFixed(1) + ' ';
      if (p.cpu != null) cpu += x(p.t) + ',' + (27 - p.cpu / cpuTop * 25).toFixed(1) + ' ';
    }
    memLine.setAttribute('points', mem);
    cpuLine.setAttribute('points', cpu);
    box.setAttribute('aria-label', 'memory over the last ' + Math.round((t1 - s[0].t) / 60000) +
                     ' min: peak ' + bytes(peak) + ', now ' + bytes(s[s.length - 1].mem));
    box.nextSibling.textContent = s.length < 2 ? '' : cpu ? 'memory ─, CPU ┄' : 'memory ─';
  }

  function memoryCell(mem) {
    const scale = Math.max(mem.limit ?? 0, mem.usage, mem.anon + mem.cache + mem.shmem + mem.kernel, 1);
    const pct = (v) => (Math.max(0, v) / scale * 100).toFixed(2) + '%';
    const bar = el('div', {class: 'membar', role: 'img'},
      el('span', {class: 'seg mem-anon', style: 'width:' + pct(mem.anon)}),
      el('span', {class: 'seg mem-file', style: 'width:' + pct(mem.cache)}),
      el('span', {class: 'seg mem-shmem', style: 'width:' + pct(mem.shmem)}),
      el('span', {class: 'seg mem-kernel', style: 'width:' + pct(mem.kernel)}));
    if (mem.limit != null) bar.append(el('span', {class: 'mark limit', style: 'left:calc(' + pct(mem.limit) + ' - 3px)'}));
    if (mem.cacheBudget != null) {
      bar.append(el('span', {class: 'mark cache', style: 'left:' + pct(mem.anon + mem.shmem + mem.kernel + mem.cacheBudget)}));
    }
    bar.setAttribute('aria-label', mem.text);
    return [bar, el('div', {class: 'memtext'}, mem.text)];
  }

  // A table cell whose content is one block, so that the phone layout's label column stays aligned.
  function cell(tag, attrs, ...children) {
    return el(tag, attrs, el('div', {class: 'cell'}, ...children));
  }

  // Keyed rows: a row is built again only when what it shows (its signature) changed, and the
  // list is only reordered when its order changed, so a refresh that changes nothing makes no
  // DOM nodes (every refresh used to rebuild all of them: garbage for Blink's heap to collect).
  const keyed = new WeakMap();  // container -> Map(key -> {sig, node})
  function syncRows(container, items, key, signature, build, empty) {
    const old = keyed.get(container) ?? new Map(), next = new Map();
    const nodes = items.map((item) => {
      const k = key(item), sig = signature(item);
      let entry = old.get(k);
      if (!entry || entry.sig !== sig) entry = {sig, node: build(item)};
      next.set(k, entry);
      return entry.node;
    });
    keyed.set(container, next);
    if (nodes.length === 0) nodes.push(empty);
    const current = container.children;
    if (nodes.length === current.length && nodes.every((n, i) => current[i] === n)) return;
    keepingFocus(() => container.replaceChildren(...nodes));
  }

  // What a workload's row shows, as text, so that equal rows compare equal.
  function workloadRow(w, marks) {
    const name = workloadName(w), state = workloadState(w), mem = memoryOf(w);
    mem.text = 'anon ' + bytes(mem.anon) + ' · file ' + bytes(mem.cache) + ' · shmem ' + bytes(mem.shmem) +
               ' · kernel ' + bytes(mem.kernel) + ' / limit ' + (mem.limit != null ? bytes(mem.limit) : 'none') +
               (mem.cacheBudget != null ? ' · cache budget ' + bytes(mem.cacheBudget) : '');
    const samples = model.samples.get(name) ?? [];
    const use = samples.length ? samples[samples.length - 1].cpu : null;
    const placed = pick(w, 'placement.cpus', 'cpuset', 'cpus_list');
    const runState = pick(w, 'verdict.state', 'run.state') ?? null;
    return {
      name, state, mem, mark: marks.get(name), runState,
      shownState: String(pick(w, 'state') ?? state) + (runState && runState !== state ? ' (' + runState + ')' : ''),
      verdict: workloadVerdict(w), why: pick(w, 'verdict.message', 'run.message') ?? null,
      restarts: String(pick(w, 'restarts', 'restart_count') ?? 0),
      cpu: cpuText(w, use), placed: placed ? String(placed) : null,
      highlight: model.highlight === name,
    };
  }

  function buildWorkloadRow(r) {
    const spark = sparkline();
    return el('tr', {tabindex: '0', 'data-workload': r.name, 'data-state': r.state,
                     'data-run-state': r.runState, 'aria-pressed': r.highlight ? 'true' : 'false'},
      cell('th', {scope: 'row', 'data-label': 'Workload'},
         el('span', {class: 'badge', style: '--c:' + r.mark.color}, el('span', null, r.mark.label)), r.name),
      cell('td', {'data-label': 'State'},
           el('span', {class: 'state', 'data-state': r.state, 'data-run-state': r.runState}, r.shownState)),
      cell('td', {'data-label': 'Verdict', class: 'verdict'}, r.verdict || '—',
           r.verdict && r.why ? el('div', {class: 'why'}, String(r.why)) : null),
      cell('td', {'data-label': 'Restarts', class: 'num'}, r.restarts),
      cell('td', {'data-label': 'CPU use', class: 'num cpu-use'}, r.cpu,
           r.placed ? el('div', {class: 'why'}, 'on CPUs ' + r.placed) : null),
      cell('td', {'data-label': 'Memory'}, ...memoryCell(r.mem)),
      cell('td', {'data-label': 'Last 10 min'}, spark, el('div', {class: 'sparktext'})));
  }

  function renderWorkloads() {
    const body = document.querySelector('#workloads tbody');
    const marks = workloadMarks();
    const rows = model.workloads.map((w) => workloadRow(w, marks))
                     .sort((a, b) => a.name.localeCompare(b.name));
    syncRows(body, rows, (r) => r.name, (r) => JSON.stringify(r), buildWorkloadRow,
             el('tr', null, el('td', {colspan: '7', class: 'empty'}, 'No workloads.')));
    for (const r of rows) {
      const entry = keyed.get(body).get(r.name);
      drawSparkline(entry.node.querySelector('svg.spark'), model.samples.get(r.name) ?? [], r.mem.limit);
    }
    document.getElementById('workload-count').textContent = '(' + model.workloads.length + ')';
  }

  // Enter, Space or a click on a row emphasises that workload's CPUs in the map (again: all).
  function onWorkloadActivate(e) {
    if (e.type === 'keydown' && e.key !== 'Enter' && e.key !== ' ') return;
    const row = e.target.closest('tr[data-workload]');
    if (!row) return;
    e.preventDefault();
    model.highlight = model.highlight === row.dataset.workload ? null : row.dataset.workload;
    renderTopology();
    renderWorkloads();
    document.querySelector('tr[data-workload="' + CSS.escape(row.dataset.workload) + '"]')?.focus();
  }

  // ---- events --------------------------------------------------------------------------------

  function isOom(ev) {
    const text = [pick(ev, 'type', 'kind'), pick(ev, 'reason'), pick(ev, 'verdict'), pick(ev, 'state'),
                  pick(ev, 'data.verdict.verdict')].filter((x) => x != null).join(' ');
    return /\boom\b|OOM/.test(text);
  }
  function eventLine(ev) {
    return String(pick(ev, 'verdict', 'message', 'detail', 'text') ??
                  (pick(ev, 'state') ? 'state ' + pick(ev, 'state') : JSON.stringify(pick(ev, 'data') ?? '')));
  }
  // One formatter: toLocaleTimeString makes a new one per call, a fifth of the first draw's time.
  const kClock = new Intl.DateTimeFormat([], {hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false});
  function eventTime(ev) {
    const t = pick(ev, 'time', 'ts', 'at', 'timestamp');
    if (t == null) return null;
    const d = typeof t === 'number' ? new Date(t > 1e12 ? t : t * 1000) : new Date(t);
    return isNaN(d) ? null : d;
  }

  // Returns the events not seen before; the list keeps the newest kMaxEvents.
  function addEvents(events) {
    const added = [];
    for (const ev of events) {
      const seq = pick(ev, 'seq', 'id');
      if (seq != null) {
        if (model.seenSeq.has(seq)) continue;
        model.seenSeq.add(seq);
        model.since = Math.max(model.since, Number(seq) || 0);
      }
      model.events.push(ev);
      added.push(ev);
    }
    while (model.events.length > kMaxEvents) {
      const old = model.events.shift();
      model.seenSeq.delete(pick(old, 'seq', 'id'));
    }
    return added;
  }

  function renderEvents() {
    const newestFirst = [...model.events].reverse();
    const ordered = [...newestFirst.filter(isOom), ...newestFirst.filter((e) => !isOom(e))];
    syncRows(document.getElementById('events'), ordered, (ev) => pick(ev, 'seq', 'id') ?? ev, () => '', (ev) => {
      const d = eventTime(ev), oom = isOom(ev);
      return el('li', {class: oom ? 'oom' : null, 'data-seq': pick(ev, 'seq', 'id'),
                       'data-workload': pick(ev, 'workload', 'name'), 'data-kind': oom ? 'oom' : 'other'},
        el('time', d ? {datetime: d.toISOString()} : null, d ? kClock.format(d) : ''),
        el('span', {class: 'kind'}, (oom ? 'OOM kill ' : String(pick(ev, 'type', 'kind') ?? 'event') + ' ') +
                                    String(pick(ev, 'workload', 'name') ?? '')),
        el('span', {class: 'msg'}, eventLine(ev)));
    }, el('li', {class: 'empty'}, 'No events yet.'));
  }

  // ---- engines and sessions (docs/sessions.md) -----------------------------------------------

  function verdictText(v) {
    if (v == null) return '';
    return typeof v === 'string' ? v : String(pick(v, 'verdict', 'state') ?? '');
  }
  function endpointText(e) {
    if (e == null) return '—';
    const socket = pick(e, 'socket');
    return pick(e, 'port') != null ? pick(e, 'host') + ':' + pick(e, 'port') : socket ? String(socket) : '—';
  }

  // An engine or session event changes the model at once (a failed session shows its verdict
  // without waiting for the refresh it also starts); the refresh then brings the daemon's view.
  function applySessionEvent(ev) {
    const type = String(pick(ev, 'type') ?? ''), id = pick(ev, 'workload');
    const data = pick(ev, 'data') ?? {};
    if (id == null || model.sessions == null || model.engines == null) return false;
    const find = (items, extra) => {
      let item = items.find((x) => x.id === id);
      if (!item) { item = {id, key: data.key, ...extra}; items.push(item); }
      return item;
    };
    const sessionStates = {'session.opened': 'OPEN', 'session.closed': 'CLOSED', 'session.failed': 'FAILED'};
    const engineStates = {'engine.launching': 'LAUNCHING', 'engine.ready': 'READY',
                          'engine.stopping': 'STOPPING', 'engine.ended': 'ENDED'};
    if (sessionStates[type]) {
      const s = find(model.sessions, {template: String(data.key ?? '').split('/')[0]});
      Object.assign(s, {state: sessionStates[type], engine: data.engine ?? s.engine});
      if (type === 'session.failed') Object.assign(s, {verdict: data.verdict ?? s.verdict, message: pick(ev, 'message')});
      return true;
    }
    if (engineStates[type]) {
      const e = find(model.engines, {sessions: []});
      e.state = engineStates[type];
      if (type === 'engine.ended') Object.assign(e, {verdict: data.verdict ?? e.verdict, sessions: []});
      return true;
    }
    return false;
  }

  // Final states stay (docs/sessions.md): a document read before the event that ended a session
  // or an engine does not bring it back.
  const kSessionFinal = new Set(['FAILED', 'CLOSED']), kEngineFinal = new Set(['ENDED']);
  function keepFinal(next, prev, final) {
    const ended = new Map((prev ?? []).filter((x) => final.has(x.state)).map((x) => [x.id, x]));
    return next.map((x) => ended.has(x.id) && !final.has(x.state) ? ended.get(x.id) : x);
  }

  const kSessionOrder = {PENDING: 0, OPEN: 1, FAILED: 2, CLOSED: 3};
  function renderSessions() {
    const section = document.getElementById('sessions-section');
    section.hidden = model.engines == null && model.sessions == null;
    if (section.hidden) return;
    const engines = [...(model.engines ?? [])].sort((a, b) => String(a.id).localeCompare(String(b.id), undefined, {numeric: true}));
    const engineRow = (e) => ({
      id: String(e.id), key: String(pick(e, 'key') ?? ''), state: String(pick(e, 'state') ?? '?'),
      sessions: String(list(e, 'sessions').length), endpoint: endpointText(pick(e, 'endpoint')),
      verdict: verdictText(pick(e, 'verdict')), why: pick(e, 'verdict.message') ?? null});
    syncRows(document.querySelector('#engines tbody'), engines.map(engineRow), (r) => r.id, (r) => JSON.stringify(r),
      (r) => el('tr', {'data-engine': r.id, 'data-state': r.state},
        cell('th', {scope: 'row', 'data-label': 'Engine'}, r.id),
        cell('td', {'data-label': 'Key'}, r.key),
        cell('td', {'data-label': 'State'}, el('span', {class: 'state', 'data-state': r.state}, r.state)),
        cell('td', {'data-label': 'Sessions', class: 'num'}, r.sessions),
        cell('td', {'data-label': 'Endpoint'}, r.endpoint),
        cell('td', {'data-label': 'Verdict', class: 'verdict'}, r.verdict || '—',
             r.verdict && r.why ? el('div', {class: 'why'}, String(r.why)) : null)),
      el('tr', null, el('td', {colspan: '6', class: 'empty'}, 'No engines.')));
    const sessions = [...(model.sessions ?? [])].sort((a, b) =>
        (kSessionOrder[a.state] ?? 9) - (kSessionOrder[b.state] ?? 9) ||
        String(b.created_at ?? '').localeCompare(String(a.created_at ?? '')) || String(a.id).localeCompare(String(b.id)));
    const sessionRow = (s) => ({
      id: String(s.id), state: String(pick(s, 'state') ?? '?'), key: String(pick(s, 'key') ?? ''),
      owner: String(pick(s, 'owner') ?? ''), engine: String(pick(s, 'engine') ?? '—'),
      endpoint: endpointText(pick(s, 'endpoint')), verdict: verdictText(pick(s, 'verdict')),
      why: pick(s, 'message') || null});
    syncRows(document.querySelector('#sessions tbody'), sessions.map(sessionRow), (r) => r.id, (r) => JSON.stringify(r),
      (r) => el('tr', {'data-session': r.id, 'data-state': r.state, 'data-engine': r.engine},
        cell('th', {scope: 'row', 'data-label': 'Session'}, r.id),
        cell('td', {'data-label': 'State'}, el('span', {class: 'state', 'data-state': r.state}, r.state)),
        cell('td', {'data-label': 'Key'}, r.key),
        cell('td', {'data-label': 'Engine'}, r.engine),
        cell('td', {'data-label': 'Endpoint'}, r.endpoint),
        cell('td', {'data-label': 'Verdict', class: 'verdict'}, r.verdict || '—',
             r.verdict && r.why ? el('div', {class: 'why'}, String(r.why)) : null)),
      el('tr', null, el('td', {colspan: '6', class: 'empty'}, 'No sessions.')));
    const count = (n, one) => n + ' ' + one + (n === 1 ? '' : 's');
    document.getElementById('sessions-count').textContent =
        '(' + count(engines.filter((e) => e.state !== 'ENDED').length, 'engine') + ' live, ' +
        count(sessions.filter((s) => s.state === 'OPEN' || s.state === 'PENDING').length, 'session') + ' open)';
  }

  // ---- refresh and the long poll -------------------------------------------------------------

  // A daemon without engines (older, or a front that does not forward them) answers 404 once;
  // the page then stops asking.
  let sessionsMissing = false;
  function optionalJson(path, first) {
    if (sessionsMissing) return Promise.resolve(null);
    return getJson(path, null, first).catch((err) => {
      if (/HTTP 404$/.test(err.message)) { sessionsMissing = true; return null; }
      throw err;
    });
  }

  let refreshing = null, refreshAgain = false, firstLoad = true;
  async function refresh() {
    if (refreshing) { refreshAgain = true; return refreshing; }
    refreshing = (async () => {
      try {
        const now = Date.now(), first = firstLoad;
        firstLoad = false;
        const wantTopology = !model.topology || model.topologyStale || now - model.topologyAt > kTopologyMs;
        const [node, workloads, placements, topology, engines, sessions] = await Promise.all([
          getJson('/v1/node', null, first), getJson('/v1/workloads', null, first),
          getJson('/v1/placements', null, first),
          wantTopology ? getJson('/v1/node/topology', null, first) : model.topology,
          optionalJson('/v1/engines', first), optionalJson('/v1/sessions', first)]);
        if (first) performance.mark('hostfit:documents');
        if (wantTopology) Object.assign(model, {topology, topologyAt: now, topologyStale: false});
        // The map reads one document: the node's facts with the machine's shape beside them.
        model.node = {...node, ...topology, cpus: node.cpus};
        model.workloads = list(workloads, 'workloads', 'items');
        model.placements = list(placements, 'placements', 'holds', 'items');
        model.engines = engines == null ? null : keepFinal(list(engines, 'engines'), model.engines, kEngineFinal);
        model.sessions = sessions == null ? null : keepFinal(list(sessions, 'sessions'), model.sessions, kSessionFinal);
        document.getElementById('host').textContent = String(pick(node, 'hostname', 'host') ?? '');
        sample(Date.now());
        renderTopology();
        renderWorkloads();
        renderSessions();
        setStatus('live', 'live');
      } catch (err) {
        setStatus('lost', 'cannot read the daemon: ' + err.message);
      }
    })();
    await refreshing;
    refreshing = null;
    if (refreshAgain) { refreshAgain = false; return refresh(); }
  }

  // The long poll in flight. A page left (or put in the back/forward cache) aborts it: a browser
  // keeps six connections per server, and abandoned polls would hold them until they time out.
  let poll = null;
  async function follow() {
    let delay = 500;
    for (;;) {
      poll = new AbortController();
      try {
        const r = await getJson('/v1/events?since=' + model.since + '&wait=' + kPollWaitS, poll.signal);
        const events = addEvents(list(r, 'events', 'items'));
        const next = pick(r, 'next', 'next_since', 'last_seq');
        if (events.length) {
          renderEvents();
          if (events.map(applySessionEvent).some(Boolean)) renderSessions();
          if (events.some((e) => /^(placement|attachment)\./.test(pick(e, 'type') ?? ''))) model.topologyStale = true;
          refresh();  // a state change, a placement, a kill: the other views follow
        }
        if (next != null) model.since = Math.max(model.since, Number(next));
        setStatus('live', 'live');
        delay = 500;
      } catch (err) {
        if (poll.signal.aborted) return;
        setStatus('lost', 'reconnecting… (' + err.message + ')');
        await new Promise((ok) => setTimeout(ok, delay));
        delay = Math.min(delay * 2, 10000);
      }
    }
  }

  async function start() {
    performance.mark('hostfit:script');
    document.querySelector('#workloads tbody').addEventListener('click', onWorkloadActivate);
    document.querySelector('#workloads tbody').addEventListener('keydown', onWorkloadActivate);
    // The event history and the documents side by side (index.html preloads them all, so they
    // are under way while this script loads), then the live feed from where the history ends.
    const history = getJson('/v1/events?since=0&wait=0', null, true).then(
        (r) => addEvents(list(r, 'events', 'items')),
        (err) => setStatus('lost', 'cannot read events: ' + err.message));
    await Promise.all([history, refresh()]);
    renderEvents();
    performance.mark('hostfit:drawn');
    document.body.dataset.loaded = 'true';
    let timer = setInterval(refresh, kRefreshMs);
    follow();
    window.addEventListener('pagehide', () => { poll?.abort(); clearInterval(timer); });
    window.addEventListener('pageshow', (e) => {
      if (!e.persisted) return;  // back from the back/forward cache: catch up and follow again
      timer = setInterval(refresh, kRefreshMs);
      refresh();
      follow();
    });
  }

  window.hostfitPage = model;  // for tests and the curious: the page's state, read-only by convention
  start();
})();
