// The ClusterKit dashboard: it follows the partition map of the node that serves it, over that
// node's read-only HTTP API, and draws it. Plain JavaScript with no dependencies: the node embeds
// this file and serves it at /ui/, under a Content-Security-Policy that allows nothing but the
// node itself (no inline script or style, no other origin), so the page builds every element
// with the DOM API and never parses HTML.
'use strict';

(function () {
  // The API is mounted one level above /ui/: relative URLs keep working when the node's
  // handler is mounted under a prefix on another server.
  const API = '../';
  // The long poll of GET /cluster/map and GET /cluster (the node caps it at 60s).
  const WAIT = '20s';
  // How many maps the history table shows.
  const HISTORY = 20;
  // Rows of the handoff table; the count above it says how many there are in all.
  const MAX_HANDOFF_ROWS = 200;
  // Colours of the first nodes, then hues spread by the golden angle.
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948',
    '#b07aa1', '#ff9da7', '#9c755f', '#8cd17d', '#86bcb6', '#d4a6c8'];
  // A partition the page has no entry for (it never happens with a node's answers).
  const UNKNOWN = '#d0d5dd';

  const $ = (id) => document.getElementById(id);

  // The map the page shows, as the node last answered it.
  const map = {
    id: '', name: '', epoch: 0, leader: '', updatedAt: '',
    nodes: {},
    count: 0,
    prefix: 'partition-',
    // parts[i] is partition i: {primary, replicas, pending, primaryEpoch}.
    parts: [],
  };
  // How the page follows the map: 'map' (GET /cluster/map, deltas), or 'cluster' (GET /cluster,
  // whole) with a node that does not serve GET /cluster/map.
  let mode = 'map';
  let etag = '';
  // What only GET /cluster tells: the map's cause, each handoff's attempt and age, and the
  // copies queued into each node (throttled handoffs).
  let details = { epoch: 0, cause: null, handoffs: new Map(), queued: {} };
  // The history records of the last maps, and the epoch they were asked for.
  let history = [];
  let historyNote = '';
  // Each node's weight and state, and the maintenances that stand (GET /cluster/nodes): they
  // follow the operators' actions, which change without a new map. null until read, and for a
  // node that does not serve GET /cluster/nodes.
  let states = null;
  // The node serving the page (GET /health), for the status line.
  let servedBy = '';
  // Derived from the map on each change.
  let load = new Map();
  let pendingTotal = 0;
  // A colour per node ID, kept while the page is open so that a node keeps its colour.
  const colours = new Map();
  // The grid's geometry as last drawn, and the partitions under the pointer and selected.
  let grid = null;
  let selected = -1;

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // el builds an element: props sets the class, dataset, title and attributes; children are
  // nodes or text.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k === 'title') e.title = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function swatch(colour) {
    const s = el('span', { class: 'swatch' });
    s.style.backgroundColor = colour; // CSSOM, which the policy allows
    return s;
  }

  function hslToHex(h, s, l) {
    s /= 100;
    l /= 100;
    const k = (n) => (n + h / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
    const hex = (x) => Math.round(x * 255).toString(16).padStart(2, '0');
    return '#' + hex(f(0)) + hex(f(8)) + hex(f(4));
  }

  function colourOf(id) {
    let c = colours.get(id);
    if (c === undefined) {
      const i = colours.size;
      c = i < PALETTE.length ? PALETTE[i] : hslToHex((i * 137.508) % 360, 55, 52);
      colours.set(id, c);
    }
    return c;
  }

  // ---- following the map ----

  function partitionIndex(id) {
    if (!id.startsWith(map.prefix)) return -1;
    const i = Number(id.slice(map.prefix.length));
    return Number.isInteger(i) && i >= 0 && i < map.count ? i : -1;
  }

  function entry(p) {
    return {
      primary: p.primary_node,
      replicas: p.replica_nodes || [],
      pending: p.pending_nodes || [],
      primaryEpoch: p.primary_epoch,
    };
  }

  function setPrefix(format) {
    const f = format || 'partition-%d';
    map.prefix = f.slice(0, Math.max(0, f.indexOf('%d')));
  }

  // applyDelta applies a GET /cluster/map answer; false when it does not apply to the map the
  // page holds (another cluster, or another epoch), which is then asked for whole.
  function applyDelta(d) {
    if (!d.full && (d.id !== map.id || d.since !== map.epoch)) return false;
    if (d.full || d.partition_count !== map.count) {
      map.parts = new Array(d.partition_count).fill(null);
    }
    map.id = d.id;
    map.name = d.name;
    map.epoch = d.epoch;
    map.leader = d.leader;
    map.updatedAt = d.updated_at;
    map.nodes = d.nodes || {};
    map.count = d.partition_count;
    setPrefix(d.hash_config && d.hash_config.format);
    for (const p of d.partitions || []) {
      const i = partitionIndex(p.id);
      if (i >= 0) map.parts[i] = entry(p);
    }
    return true;
  }

  // applyCluster replaces the map with a GET /cluster answer.
  function applyCluster(body) {
    const c = body.cluster;
    const pm = c.partition_map || {};
    map.id = c.id;
    map.name = c.name;
    map.epoch = c.epoch;
    map.leader = c.leader;
    map.updatedAt = c.updated_at;
    map.nodes = c.nodes || {};
    map.count = (body.hash_config && body.hash_config.modulo) || Object.keys(pm).length;
    setPrefix(body.hash_config && body.hash_config.format);
    map.parts = new Array(map.count).fill(null);
    for (const p of Object.values(pm)) {
      const i = partitionIndex(p.id);
      if (i >= 0) map.parts[i] = entry(p);
    }
    details = detailsOf(c);
  }

  function detailsOf(c) {
    const handoffs = new Map();
    for (const h of c.handoffs || []) handoffs.set(h.partition + '/' + h.node, h);
    return { epoch: c.epoch, cause: c.cause, handoffs, queued: c.queued || {} };
  }

  async function apiError(resp) {
    let msg = resp.statusText;
    try {
      const body = await resp.json();
      if (body && body.error) msg = body.error;
    } catch (e) {
      // not JSON: keep the status text
    }
    const err = new Error(`${resp.status} ${msg}`);
    err.retryAfter = Number(resp.headers.get('Retry-After')) || 0;
    return err;
  }

  // pollMap asks GET /cluster/map for what changed since the map the page holds, waiting for a
  // change; it reports whether the map changed.
  async function pollMap() {
    const url = map.epoch ? `${API}cluster/map?since=${map.epoch}&wait=${WAIT}` : `${API}cluster/map`;
    const resp = await fetch(url, { cache: 'no-store' });
    if (resp.status === 304) return false;
    if (resp.status === 404) {
      mode = 'cluster';
      return false;
    }
    if (!resp.ok) throw await apiError(resp);
    if (!applyDelta(await resp.json())) {
      map.epoch = 0;
      return false;
    }
    return true;
  }

  // pollCluster is the long poll of GET /cluster, for a node without GET /cluster/map.
  async function pollCluster() {
    const headers = etag ? { 'If-None-Match': etag } : {};
    const url = etag ? `${API}cluster?wait=${WAIT}` : `${API}cluster`;
    const resp = await fetch(url, { cache: 'no-store', headers });
    if (resp.status === 304) return false;
    if (!resp.ok) throw await apiError(resp);
    etag = resp.headers.get('ETag') || '';
    applyCluster(await resp.json());
    return true;
  }

  async function follow() {
    let delay = 500;
    for (;;) {
      const started = Date.now();
      let changed = false;
      try {
        changed = mode === 'map' ? await pollMap() : await pollCluster();
        delay = 500;
        setStatus('live', `live: following ${servedBy || 'this node'}` +
          (mode === 'map' ? '' : ' (GET /cluster)'));
      } catch (err) {
        setStatus('error', `${err.message}: retrying`);
        await sleep(Math.max(delay, (err.retryAfter || 0) * 1000));
        delay = Math.min(delay * 2, 8000);
        continue;
      }
      if (changed) {
        mapChanged();
      } else if (Date.now() - started < 200) {
        await sleep(500); // an answer without a wait: do not spin
      }
    }
  }

  // followStates long-polls GET /cluster/nodes, whose ETag changes with the map and with the
  // operators' actions, for each node's weight and state. A node that does not serve it (404)
  // is not asked again: the map's node table is then all the page shows.
  async function followStates() {
    let tag = '';
    let delay = 500;
    for (;;) {
      const started = Date.now();
      let changed = false;
      try {
        const headers = tag ? { 'If-None-Match': tag } : {};
        const url = tag ? `${API}cluster/nodes?wait=${WAIT}` : `${API}cluster/nodes`;
        const resp = await fetch(url, { cache: 'no-store', headers });
        if (resp.status === 404) return;
        if (resp.status !== 304) {
          if (!resp.ok) throw await apiError(resp);
          const next = resp.headers.get('ETag') || '';
          changed = next !== tag;
          tag = next;
          states = await resp.json();
          renderHeader();
          renderNodes();
        }
        delay = 500;
      } catch (err) {
        await sleep(Math.max(delay, (err.retryAfter || 0) * 1000));
        delay = Math.min(delay * 2, 8000);
        continue;
      }
      if (!changed && Date.now() - started < 200) await sleep(500); // an answer without a wait: do not spin
    }
  }

  // nodeInfo is what the page knows of node id: its entry in GET /cluster/nodes when the node
  // serves it, else in the map's node table; undefined for a node in neither.
  function nodeInfo(id) {
    if (states && states.id === map.id && states.nodes && states.nodes[id]) return states.nodes[id];
    return map.nodes[id];
  }

  // fetchDetails reads GET /cluster while copies are running, for their attempts and ages: at
  // most one request at a time, and at most one a second (one in five for large maps).
  let detailsBusy = false;
  async function fetchDetails() {
    if (detailsBusy) return;
    detailsBusy = true;
    try {
      while (mode === 'map' && pendingTotal > 0 && details.epoch !== map.epoch) {
        const started = Date.now();
        const resp = await fetch(`${API}cluster`, { cache: 'no-store' });
        if (!resp.ok) break;
        const body = await resp.json();
        if (body.cluster.id === map.id) {
          details = detailsOf(body.cluster);
          renderHeader();
          renderNodes();
          renderHandoffs();
        }
        await sleep(Math.max(0, (map.count > 16384 ? 5000 : 1000) - (Date.now() - started)));
      }
    } catch (e) {
      // the handoff table keeps what the map says
    } finally {
      detailsBusy = false;
    }
  }

  // fetchHistory reads the records of the last HISTORY maps up to the one the page holds.
  let historyBusy = false;
  let historyEpoch = -1;
  async function fetchHistory() {
    if (historyBusy) return;
    historyBusy = true;
    try {
      while (historyEpoch !== map.epoch) {
        const epoch = map.epoch;
        const since = Math.max(0, epoch - HISTORY);
        const resp = await fetch(`${API}cluster/history?since=${since}&limit=${HISTORY}`, { cache: 'no-store' });
        if (resp.status === 404) {
          historyNote = 'This node does not serve GET /cluster/history.';
          history = [];
        } else if (!resp.ok) {
          historyNote = `History unavailable: ${(await apiError(resp)).message}.`;
        } else {
          history = (await resp.json()).records || [];
          historyNote = history.length ? '' : 'No records kept.';
        }
        historyEpoch = epoch;
        renderHistory();
        renderHeader();
      }
    } catch (e) {
      historyNote = `History unavailable: ${e.message}.`;
      renderHistory();
    } finally {
      historyBusy = false;
    }
  }

  function mapChanged() {
    load = new Map();
    pendingTotal = 0;
    const of = (id) => {
      let l = load.get(id);
      if (!l) load.set(id, (l = { primary: 0, replica: 0, pending: 0 }));
      return l;
    };
    for (const id of Object.keys(map.nodes).sort()) {
      of(id);
      colourOf(id);
    }
    for (const p of map.parts) {
      if (!p) continue;
      of(p.primary).primary++;
      for (const r of p.replicas) of(r).replica++;
      for (const q of p.pending) {
        of(q).pending++;
        pendingTotal++;
      }
    }
    if (pendingTotal === 0) {
      details.handoffs = new Map();
      details.queued = {};
    }
    renderHeader();
    renderNodes();
    renderLegend();
    drawGrid();
    renderSelected();
    renderHandoffs();
    fetchHistory();
    fetchDetails();
  }

  // ---- rendering ----

  function setStatus(kind, text) {
    const s = $('status');
    s.className = 'status ' + kind;
    s.textContent = text;
  }

  function causeOf(epoch) {
    if (details.epoch === epoch && details.cause) return details.cause;
    const r = history.find((h) => h.epoch === epoch);
    return r ? r.cause : null;
  }

  function causeText(c) {
    if (!c || !c.reason) return '–';
    return c.nodes && c.nodes.length ? `${c.reason}: ${c.nodes.join(', ')}` : c.reason;
  }

  function pad(n, w) {
    return String(n).padStart(w || 2, '0');
  }

  function clock(t, millis) {
    const d = new Date(t);
    if (isNaN(d)) return '–';
    const s = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return millis ? `${s}.${pad(d.getMilliseconds(), 3)}` : s;
  }

  function ago(t) {
    const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
    if (!(s >= 1)) return 'just now';
    if (s < 120) return `${s}s ago`;
    if (s < 7200) return `${Math.round(s / 60)}m ago`;
    if (s < 172800) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  }

  function renderUpdated() {
    if (!map.updatedAt) return;
    const u = $('updated');
    u.textContent = `${clock(map.updatedAt)} (${ago(map.updatedAt)})`;
    u.title = map.updatedAt;
  }

  function renderHeader() {
    $('name').textContent = map.name || 'ClusterKit';
    $('cluster-id').textContent = map.id;
    $('epoch').textContent = map.epoch;
    $('leader').textContent = map.leader || '–';
    $('cause').textContent = causeText(causeOf(map.epoch));
    $('partition-count').textContent = map.count;
    const maintenance = (states && states.maintenance) || [];
    const m = $('maintenance');
    m.textContent = maintenance.length ? maintenance.map((x) => x.reason).join('; ') : '–';
    m.title = maintenance.map((x) => `${x.reason}${x.by ? ' (by ' + x.by + ')' : ''} since ${x.at}`).join('\n');
    m.className = maintenance.length ? 'on' : '';
    renderUpdated();
    document.title = `${map.name || 'ClusterKit'} · epoch ${map.epoch} · ClusterKit`;
  }

  function renderNodes() {
    const ids = Object.keys(map.nodes).sort();
    // Holders the node table does not list (it should not happen) are shown too, and so are the
    // crashed nodes whose places the map keeps (down).
    for (const id of [...load.keys()].sort()) if (!(id in map.nodes)) ids.push(id);
    const down = (states && states.id === map.id && states.down) || {};
    for (const id of Object.keys(down).sort()) if (!ids.includes(id)) ids.push(id);
    const hasWeight = ids.some((id) => nodeInfo(id) && nodeInfo(id).weight !== undefined);
    const hasState = states !== null || ids.some((id) => nodeInfo(id) && nodeInfo(id).state !== undefined);
    const table = $('nodes');
    table.classList.toggle('no-weight', !hasWeight);
    table.classList.toggle('no-state', !hasState);
    const rows = ids.map((id) => {
      const n = map.nodes[id];
      const l = load.get(id) || { primary: 0, replica: 0, pending: 0 };
      const name = el('td', { class: 'id' }, id);
      if (id === map.leader) name.append(el('span', { class: 'leader-mark', title: 'the leader' }, '★'));
      if (!n && !down[id]) name.append(' ', el('span', { class: 'tag bad' }, 'not in the node table'));
      const info = nodeInfo(id);
      let state = info && info.state ? el('span', { class: 'tag warn' }, info.state) : 'serving';
      if (down[id]) {
        state = el('span', { class: 'tag bad', title: `crashed at ${down[id].since}; the map keeps its places` }, 'down');
      }
      return el('tr', { dataset: { node: id } },
        el('td', null, swatch(colourOf(id))),
        name,
        el('td', { class: 'addr' }, n ? n.ip : '–'),
        el('td', { class: 'zone' }, (n && n.zone) || (down[id] && down[id].zone) || '–'),
        el('td', { class: 'num weight' }, info && info.weight !== undefined ? info.weight : '–'),
        el('td', { class: 'state' }, state),
        el('td', { class: 'num primary' }, l.primary),
        el('td', { class: 'num replica' }, l.replica),
        el('td', { class: 'num pending' }, l.pending || '–', details.queued[id] ? ` +${details.queued[id]} queued` : null));
    });
    table.tBodies[0].replaceChildren(...rows);
    $('node-count').textContent = `${Object.keys(map.nodes).length} in the map`;
  }

  function renderLegend() {
    const items = [...load.entries()]
      .filter(([id, l]) => l.primary > 0 || id in map.nodes)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, l]) => el('span', { class: 'item', dataset: { node: id, color: colourOf(id) } },
        swatch(colourOf(id)), ` ${id} `, el('span', { class: 'muted' }, `${l.primary} primary`)));
    $('legend').replaceChildren(...items);
  }

  // drawGrid draws one cell per partition on the canvas, coloured by its primary node, with a
  // white mark on partitions being copied in. The cells are one pixel each in an image, scaled
  // up without smoothing: a few milliseconds at 65536 partitions, where a rectangle per cell
  // takes a hundred or more.
  const cellImage = document.createElement('canvas');
  const packed = new Map();
  function pixel(hex) {
    let v = packed.get(hex);
    if (v === undefined) {
      const rgb = parseInt(hex.slice(1), 16);
      // ImageData holds r, g, b, a bytes: a little-endian uint32 reads them backwards.
      v = ((0xff << 24) | ((rgb & 0xff) << 16) | (rgb & 0xff00) | (rgb >> 16)) >>> 0;
      packed.set(hex, v);
    }
    return v;
  }

  function drawGrid() {
    const canvas = $('grid');
    const n = map.count;
    const width = Math.max(120, $('grid-wrap').clientWidth);
    const maxHeight = Math.max(220, Math.min(560, window.innerHeight - 260));
    const cell = Math.max(2, Math.min(28, Math.floor(Math.sqrt((width * maxHeight) / Math.max(1, n)))));
    const cols = Math.max(1, Math.min(n, Math.floor(width / cell)));
    const rows = Math.ceil(n / cols);
    const gap = cell >= 8 ? 1 : 0;
    const dpr = window.devicePixelRatio || 1;
    const w = cols * cell;
    const h = rows * cell;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (n === 0) {
      grid = null;
      return;
    }
    const img = new ImageData(cols, rows);
    const px = new Uint32Array(img.data.buffer);
    for (let i = 0; i < n; i++) {
      const p = map.parts[i];
      px[i] = pixel(p ? colourOf(p.primary) : UNKNOWN);
    }
    cellImage.width = cols;
    cellImage.height = rows;
    cellImage.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(cellImage, 0, 0, w, h);
    if (gap) {
      for (let c = 1; c <= cols; c++) ctx.clearRect(c * cell - gap, 0, gap, h);
      for (let r = 1; r <= rows; r++) ctx.clearRect(0, r * cell - gap, w, gap);
    }
    const size = cell - gap;
    if (cell >= 6) {
      const m = Math.max(2, Math.round(size / 3));
      const o = Math.floor((size - m) / 2);
      ctx.fillStyle = '#ffffff';
      for (let i = 0; i < n; i++) {
        const p = map.parts[i];
        if (p && p.pending.length) ctx.fillRect((i % cols) * cell + o, Math.floor(i / cols) * cell + o, m, m);
      }
    }
    if (selected >= 0 && selected < n) {
      ctx.strokeStyle = '#111827';
      ctx.lineWidth = 2;
      ctx.strokeRect((selected % cols) * cell - 1, Math.floor(selected / cols) * cell - 1, size + 2, size + 2);
    }
    grid = { cell, cols, rows, n };
    canvas.dataset.cell = cell;
    canvas.dataset.cols = cols;
    canvas.dataset.count = n;
    canvas.dataset.epoch = map.epoch;
    canvas.setAttribute('aria-label', `partition map of epoch ${map.epoch}: ${n} partitions`);
  }

  function holdersText(p) {
    return [
      ['primary', `${p.primary} (since epoch ${p.primaryEpoch})`],
      ['replicas', p.replicas.length ? p.replicas.join(', ') : 'none'],
      ['copying in', p.pending.length ? p.pending.join(', ') : 'none'],
    ];
  }

  function cellAt(ev) {
    if (!grid) return -1;
    const r = $('grid').getBoundingClientRect();
    const col = Math.floor((ev.clientX - r.left) / grid.cell);
    const row = Math.floor((ev.clientY - r.top) / grid.cell);
    if (col < 0 || col >= grid.cols || row < 0 || row >= grid.rows) return -1;
    const i = row * grid.cols + col;
    return i < grid.n ? i : -1;
  }

  function showTip(ev) {
    const tip = $('tip');
    const i = cellAt(ev);
    const p = i >= 0 ? map.parts[i] : null;
    if (!p) {
      tip.hidden = true;
      return;
    }
    const lines = holdersText(p).map(([k, v]) => el('div', null, `${k}: ${v}`));
    tip.replaceChildren(el('b', null, map.prefix + i), ...lines);
    tip.hidden = false;
    const wrap = $('grid-wrap').getBoundingClientRect();
    let x = ev.clientX - wrap.left + 14;
    const y = ev.clientY - wrap.top + 14;
    if (x + tip.offsetWidth > wrap.width) x = Math.max(0, ev.clientX - wrap.left - tip.offsetWidth - 14);
    tip.style.left = `${x}px`;
    tip.style.top = `${y}px`;
  }

  function renderSelected() {
    const box = $('selected');
    const p = selected >= 0 ? map.parts[selected] : null;
    if (!p) {
      box.className = 'muted';
      box.textContent = 'No partition selected: click a cell.';
      return;
    }
    box.className = '';
    const parts = [el('b', null, map.prefix + selected), ' '];
    for (const [k, v] of holdersText(p)) parts.push(el('span', { class: 'muted' }, ` ${k} `), v);
    box.replaceChildren(...parts);
  }

  function renderHandoffs() {
    const rows = [];
    map.parts.forEach((p, i) => {
      if (!p) return;
      for (const node of p.pending) {
        const h = details.handoffs.get(map.prefix + i + '/' + node);
        rows.push({ i, node, from: [p.primary, ...p.replicas], h });
      }
    });
    rows.sort((a, b) => (b.h && b.h.overdue ? 1 : 0) - (a.h && a.h.overdue ? 1 : 0) || a.i - b.i);
    const trs = rows.slice(0, MAX_HANDOFF_ROWS).map((r) => el('tr', { dataset: { partition: map.prefix + r.i, node: r.node } },
      el('td', { class: 'id' }, map.prefix + r.i),
      el('td', { class: 'id' }, swatch(colourOf(r.node)), ' ', r.node),
      el('td', { class: 'id' }, r.from.join(', ')),
      el('td', { class: 'num' }, r.h ? r.h.attempt : '–'),
      el('td', { class: 'num', title: 'how long the copy had run when the map was published' }, r.h ? copyAge(r.h) : '–'),
      el('td', null, r.h ? (r.h.overdue ? el('span', { class: 'tag bad' }, 'overdue') : 'no') : '–')));
    if (rows.length > MAX_HANDOFF_ROWS) {
      trs.push(el('tr', null, el('td', { colspan: 6, class: 'muted' }, `… and ${rows.length - MAX_HANDOFF_ROWS} more`)));
    }
    $('handoffs').tBodies[0].replaceChildren(...trs);
    $('handoffs').hidden = rows.length === 0;
    $('handoffs-none').hidden = rows.length > 0;
    const queued = Object.values(details.queued).reduce((a, b) => a + b, 0);
    $('handoff-count').textContent = (rows.length ? `${rows.length} running` : '') + (queued ? `, ${queued} queued` : '');
  }

  // copyAge is how long a copy had run when the map the page shows was published: both times
  // are the leader's, so the browser's clock does not enter.
  function copyAge(h) {
    const ms = Date.parse(map.updatedAt) - Date.parse(h.started);
    if (!(ms >= 0)) return h.age;
    if (ms < 1000) return `${ms}ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)}s`;
    return `${Math.floor(ms / 60000)}m${Math.round((ms % 60000) / 1000)}s`;
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / (1 << 20)).toFixed(1)} MiB`;
  }

  function renderHistory() {
    const trs = history.slice().reverse().map((r) => el('tr', { dataset: { epoch: r.epoch } },
      el('td', { class: 'num' }, r.epoch),
      el('td', { title: r.updated_at }, clock(r.updated_at, true)),
      el('td', { class: 'id' }, r.leader),
      el('td', { class: 'wrap cause' }, causeText(r.cause)),
      el('td', { class: 'num' }, r.nodes),
      el('td', { class: 'num' }, r.changed),
      el('td', { class: 'num' }, r.primaries_moved),
      el('td', { class: 'num' }, r.copies_started),
      el('td', { class: 'num' }, r.copies_done),
      el('td', { class: 'num' }, r.pending),
      el('td', { class: 'num' }, `${Number(r.compute_ms).toFixed(2)} ms`),
      el('td', { class: 'num' }, bytes(r.bytes))));
    $('history').tBodies[0].replaceChildren(...trs);
    $('history-note').textContent = historyNote;
  }

  // ---- start ----

  let redraw = false;
  window.addEventListener('resize', () => {
    if (redraw) return;
    redraw = true;
    requestAnimationFrame(() => {
      redraw = false;
      if (map.count) drawGrid();
    });
  });
  const canvas = $('grid');
  canvas.addEventListener('mousemove', showTip);
  canvas.addEventListener('mouseleave', () => {
    $('tip').hidden = true;
  });
  canvas.addEventListener('click', (ev) => {
    const i = cellAt(ev);
    selected = i === selected ? -1 : i;
    renderSelected();
    drawGrid();
  });
  setInterval(renderUpdated, 1000);
  renderSelected();
  renderHandoffs();
  fetch(`${API}health`, { cache: 'no-store' })
    .then((resp) => resp.json())
    .then((h) => {
      servedBy = h.node_id || '';
    })
    .catch(() => {});
  follow();
  followStates();
})();
