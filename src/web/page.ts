// The dashboard page: one self-contained document (HTML, CSS and plain JS inline, nothing
// fetched from elsewhere, no build step), embedded here so it ships in dist/ with tsc. The CSP
// allows exactly this script and this style by their hashes. Every name from the cluster (file
// names, machines, checks) is hostile: the script puts them in with textContent only, never as
// markup. The token comes in the URL's fragment (never sent to a server), is kept in
// sessionStorage, cut from the address bar, and sent in the X-DelugeFS-Token header.
import { createHash } from 'node:crypto';

const STYLE = String.raw`
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{display:flex;gap:1em;align-items:center;padding:.6em 1em;background:#1d2330;color:#fff}
header h1{font-size:1.1em;margin:0}
#verdict{padding:.15em .6em;border-radius:4px;font-weight:bold}
.OK{background:#2e7d32;color:#fff}.WARN{background:#ed8b00;color:#000}.ERROR{background:#c62828;color:#fff}
#live{margin-left:auto;font-size:.85em}#live.on::before{content:"\25CF ";color:#5c5}#live.off::before{content:"\25CF ";color:#c55}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1em;padding:1em}
section{background:#fff;border-radius:6px;padding:.8em 1em;box-shadow:0 1px 2px #0002;overflow:auto}
section h2{font-size:1em;margin:0 0 .5em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2em .4em;border-bottom:1px solid #eee;vertical-align:top}
.machine{border:1px solid #dde;border-radius:4px;padding:.4em;margin:.3em 0}
.machine-name{font-weight:bold}
.disk{display:grid;grid-template-columns:11em 6em 1fr 9em;gap:.5em;align-items:center;margin:.2em 0}
.bar{background:#e3e6ec;height:10px;border-radius:5px;overflow:hidden}.fill{height:100%;background:#3b82f6}.fill.near{background:#ed8b00}
.mono{font-family:ui-monospace,monospace;font-size:.9em}
.joincode{font-family:ui-monospace,monospace;font-size:1.3em;font-weight:bold;letter-spacing:.05em}
.hint{font-size:.9em;color:#555;margin:.2em 0}
.nums{display:grid;grid-template-columns:auto auto;gap:.1em 1em;width:max-content}
button{font:inherit;cursor:pointer}button.link{border:0;background:none;color:#1d4ed8;padding:0;text-align:left}
.msg{color:#555;font-size:.9em;min-height:1.2em}.err{color:#c62828}
#files-nav{display:flex;gap:.5em;align-items:center;margin-bottom:.4em}
#files-box,#conflicts-box{grid-column:1/-1}
.holder{display:inline-block;background:#eef;border-radius:3px;padding:0 .3em;margin:0 .2em .1em 0}.holder.partial{background:#fde}
`;

const SCRIPT = String.raw`
(function () {
  'use strict';
  var KEY = 'delugefs-token';
  var token = '';
  var m = /(?:^#|&)token=([0-9a-f]{64})(?:&|$)/.exec(location.hash);
  if (m) {
    token = m[1];
    try { sessionStorage.setItem(KEY, token); } catch (e) {}
    history.replaceState(null, '', location.pathname + location.search);
  } else {
    try { token = sessionStorage.getItem(KEY) || ''; } catch (e) {}
  }
  var state = { dir: '/', offset: 0, limit: 100, head: undefined, total: 0 };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function row(cells) {
    var tr = el('tr');
    cells.forEach(function (c) { var td = el('td'); if (c instanceof Node) td.appendChild(c); else td.textContent = String(c); tr.appendChild(td); });
    return tr;
  }
  function bytes(n) {
    var u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
  }
  function pct(x) { return Math.round(x * 100) + ' %'; }
  function api(path, opts) {
    opts = opts || {};
    opts.headers = { 'X-DelugeFS-Token': token };
    opts.cache = 'no-store';
    opts.credentials = 'omit';
    return fetch(path, opts).then(function (r) {
      return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || ('HTTP ' + r.status)); return j; });
    });
  }
  // Counts the updates applied (the browser test reads it).
  function bump() { document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1); }
  function fail(where, e) { var t = $(where); if (t) { t.textContent = e.message; t.className = 'msg err'; } }

  function renderStatus(h) {
    var v = $('verdict');
    v.textContent = 'HEALTH_' + h.verdict;
    v.className = h.verdict;
    $('cluster').textContent = h.cluster;
    $('node').textContent = h.nodeId;
    var checks = $('checks'); clear(checks);
    if (!h.checks.length) checks.appendChild(el('li', null, 'no checks failing'));
    h.checks.forEach(function (c) {
      var li = el('li'); li.dataset.code = c.code;
      li.appendChild(el('b', null, c.severity + ' ' + c.code));
      li.appendChild(document.createTextNode(': ' + c.message));
      checks.appendChild(li);
    });
    var n = h.nodes;
    $('members').textContent = String(n.members);
    $('machines').textContent = String(n.machines);
    $('disk-count').textContent = String(h.disks.length);
    $('up').textContent = n.up + ' up, ' + n.down + ' down, ' + n.maintenance + ' maintenance, ' + n.draining + ' draining' + (n.unknown ? ', ' + n.unknown + ' not heard from' : '');
    var map = $('map'); clear(map);
    var byMachine = {};
    h.disks.forEach(function (d) { (byMachine[d.machine] = byMachine[d.machine] || []).push(d); });
    Object.keys(byMachine).sort().forEach(function (name) {
      var box = el('div', 'machine'); box.dataset.machine = name;
      box.appendChild(el('div', 'machine-name', name || '?'));
      byMachine[name].forEach(function (d) {
        var row = el('div', 'disk'); row.dataset.node = d.node;
        row.appendChild(el('span', 'mono name', d.node + (d.node === h.nodeId ? ' (this)' : '')));
        row.appendChild(el('span', 'state', d.state));
        var bar = el('div', 'bar'), fill = el('div', 'fill' + (d.fill >= 0.85 ? ' near' : ''));
        fill.style.width = Math.min(100, Math.max(0, d.fill * 100)).toFixed(1) + '%';
        bar.appendChild(fill); row.appendChild(bar);
        row.appendChild(el('span', 'pct', pct(d.fill) + ' of ' + bytes(d.total)));
        box.appendChild(row);
      });
      map.appendChild(box);
    });
    var c = h.content;
    $('ids').textContent = String(c.ids);
    $('copies').textContent = c.copies === null ? '?' : String(c.copies);
    $('under').textContent = String(c.under);
    $('lost').textContent = String(c.lost);
    $('fetching').textContent = String(c.fetching);
    $('queued').textContent = String(c.queued);
    $('judged').textContent = c.judgedAt || 'not yet';
    // Progress: content on its copies, of all content the namespace references.
    var placed = c.ids ? (c.ids - c.under) / c.ids : 1;
    $('repl-fill').style.width = (placed * 100).toFixed(1) + '%';
    $('repl-text').textContent = c.judgedAt ? (c.ids - c.under) + ' of ' + c.ids + ' on their copies' : 'not judged yet';
    var ns = h.namespace;
    $('ns-files').textContent = String(ns.files);
    $('ns-dirs').textContent = String(ns.dirs);
    $('ns-bytes').textContent = bytes(ns.bytes);
    $('conflicts-count').textContent = String(ns.conflicts);
    if (state.head !== h.head) {
      var first = state.head === undefined;
      state.head = h.head;
      if (!first) { loadFiles(); loadConflicts(); }
    }
  }

  function renderPeers(rows) {
    var tb = $('peers'); clear(tb);
    rows.forEach(function (r) {
      var sync = r.self ? '-' : r.sync ? (r.sync.failures ? 'failing (' + r.sync.failures + ')' : r.sync.behind ? r.sync.behind + ' to send' : 'in step') : 'no exchange yet';
      var at = r.self ? '-' : r.seen ? r.seen.host + ':' + r.seen.sshPort + ' (' + r.seen.source + ')' : 'not seen';
      var tr = row([el('span', 'mono', r.nodeId + (r.self ? ' (this)' : '')), r.machine + (r.zone ? ' [' + r.zone + ']' : ''), r.state, at, sync, r.self ? '-' : r.swarm]);
      tr.dataset.node = r.nodeId;
      tb.appendChild(tr);
    });
  }

  function renderTransfers(t) {
    $('down-rate').textContent = bytes(t.swarm.downloadRate) + '/s';
    $('up-rate').textContent = bytes(t.swarm.uploadRate) + '/s';
    $('downloaded').textContent = bytes(t.swarm.downloaded);
    $('uploaded').textContent = bytes(t.swarm.uploaded);
    $('conns').textContent = String(t.swarm.connections);
    $('torrents').textContent = t.swarm.active + ' active, ' + t.swarm.fetching + ' incomplete';
    $('repl-held').textContent = String(t.replication.held);
    $('repl-fetching').textContent = String(t.replication.fetching);
    $('repl-queued').textContent = String(t.replication.queued);
    $('repl-dropped').textContent = t.replication.dropped + ' dropped, ' + t.replication.cached + ' kept as read cache';
  }

  function renderJoins(list) {
    var tb = $('joins'); clear(tb);
    $('joins-count').textContent = String(list.length);
    if (!list.length) { var tr = row(['no pending joins']); tr.firstChild.colSpan = 6; tb.appendChild(tr); }
    list.forEach(function (j) {
      var ok = el('button', 'approve', 'Approve'), no = el('button', 'refuse', 'Refuse');
      var act = el('span'); act.appendChild(ok); act.appendChild(document.createTextNode(' ')); act.appendChild(no);
      var tr = row([el('span', 'joincode', j.code), el('span', 'mono', j.nodeId), j.hostname, j.address, new Date(j.since).toLocaleTimeString(), act]);
      tr.dataset.code = j.code;
      ok.addEventListener('click', function () { decide(j, 'approve', ok, no); });
      no.addEventListener('click', function () { decide(j, 'refuse', ok, no); });
      tb.appendChild(tr);
    });
  }
  function decide(j, what, ok, no) {
    ok.disabled = no.disabled = true;
    api('/api/joins/' + encodeURIComponent(j.code) + '/' + what, { method: 'POST' }).then(function (r) {
      var t = $('joins-msg'); t.className = 'msg';
      t.textContent = what === 'approve' ? 'approved ' + r.nodeId + ' (' + j.hostname + ')' : 'refused ' + j.nodeId + ' (' + j.hostname + ')';
      return api('/api/joins').then(function (x) { renderJoins(x.pending); });
    }).catch(function (e) { ok.disabled = no.disabled = false; fail('joins-msg', e); });
  }

  function go(dir) { state.dir = dir; state.offset = 0; loadFiles(); }
  function loadFiles() {
    var q = '/api/files?path=' + encodeURIComponent(state.dir) + '&offset=' + state.offset + '&limit=' + state.limit;
    return api(q).then(function (p) {
      $('files-msg').textContent = ''; $('files-msg').className = 'msg';
      state.total = p.total;
      var crumbs = $('path'); clear(crumbs);
      var parts = p.path.split('/').filter(Boolean), acc = '';
      var rootB = el('button', 'link', '/'); rootB.addEventListener('click', function () { go('/'); }); crumbs.appendChild(rootB);
      parts.forEach(function (part) {
        acc += '/' + part;
        var target = acc, b = el('button', 'link', part + '/');
        b.addEventListener('click', function () { go(target); });
        crumbs.appendChild(b);
      });
      $('files-count').textContent = p.total ? (p.offset + 1) + '-' + (p.offset + p.items.length) + ' of ' + p.total : 'empty';
      $('files-prev').disabled = p.offset === 0;
      $('files-next').disabled = p.offset + p.items.length >= p.total;
      var tb = $('files'); clear(tb);
      p.items.forEach(function (i) {
        var name;
        if (i.type === 'dir') {
          name = el('button', 'link fname', i.name + '/');
          name.addEventListener('click', function () { go((p.path === '/' ? '' : p.path.replace(/\/$/, '')) + '/' + i.name); });
        } else name = el('span', 'fname', i.name);
        var holders = el('span', 'fholders');
        i.holders.forEach(function (h) {
          var s = el('span', 'holder' + (h.complete ? '' : ' partial'), h.nodeId + (h.machine ? ' (' + h.machine + ')' : '') + (h.complete ? '' : ' ' + h.have + '/' + h.pieces));
          s.dataset.node = h.nodeId; s.title = h.state;
          holders.appendChild(s);
        });
        if (i.type === 'file' && i.size > 0 && !i.holders.length) holders.textContent = 'no disk known to hold it';
        var tr = row([name, i.type, i.type === 'file' ? bytes(i.size) : '', i.type === 'file' ? (i.copies === null ? '' : String(i.copies)) : '', holders]);
        tr.dataset.name = i.name;
        tb.appendChild(tr);
      });
    }).catch(function (e) { fail('files-msg', e); });
  }

  function loadConflicts() {
    return api('/api/conflicts').then(function (c) {
      $('conflicts-count').textContent = String(c.total);
      var tb = $('conflicts'); clear(tb);
      c.items.forEach(function (i) {
        tb.appendChild(row([i.path, i.original, i.from, i.copy.type + (i.copy.type === 'file' ? ', ' + bytes(i.copy.size) : ''), i.current ? i.current.type : 'nothing there']));
      });
    }).catch(function (e) { fail('conflicts-msg', e); });
  }

  var handlers = { status: renderStatus, peers: renderPeers, transfers: renderTransfers, joins: renderJoins };
  function setLive(on) { var l = $('live'); l.className = on ? 'on' : 'off'; l.textContent = on ? 'live' : 'reconnecting'; }
  function frame(text) {
    var ev = 'message', data = '';
    text.split('\n').forEach(function (line) {
      if (line.indexOf('event: ') === 0) ev = line.slice(7);
      else if (line.indexOf('data: ') === 0) data += line.slice(6);
    });
    if (!data || !handlers[ev]) return;
    try { handlers[ev](JSON.parse(data)); bump(); $('updated').textContent = new Date().toLocaleTimeString(); } catch (e) { console.error(e); }
  }
  // fetch, not EventSource: EventSource cannot send the token header.
  function stream() {
    fetch('/api/events', { headers: { 'X-DelugeFS-Token': token }, cache: 'no-store', credentials: 'omit' }).then(function (r) {
      if (!r.ok) return r.json().then(function (j) { throw new Error(j.error || ('HTTP ' + r.status)); });
      setLive(true);
      var reader = r.body.getReader(), dec = new TextDecoder(), buf = '';
      function pump() {
        return reader.read().then(function (x) {
          if (x.done) throw new Error('stream ended');
          buf += dec.decode(x.value, { stream: true });
          var i;
          while ((i = buf.indexOf('\n\n')) >= 0) { frame(buf.slice(0, i)); buf = buf.slice(i + 2); }
          if (buf.length > 4194304) throw new Error('event too large');
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      setLive(false);
      $('live').title = e.message;
      setTimeout(stream, 2000);
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('files-prev').addEventListener('click', function () { state.offset = Math.max(0, state.offset - state.limit); loadFiles(); });
    $('files-next').addEventListener('click', function () { state.offset += state.limit; loadFiles(); });
    $('files-up').addEventListener('click', function () { go(state.dir.replace(/\/[^/]*\/?$/, '') || '/'); });
    if (!token) { $('live').textContent = 'no token: open the URL "delugefs dashboard ROOT" prints'; $('live').className = 'off'; return; }
    api('/api/status').then(renderStatus).catch(function (e) { fail('checks-msg', e); });
    api('/api/peers').then(renderPeers).catch(function () {});
    api('/api/transfers').then(renderTransfers).catch(function () {});
    api('/api/joins').then(function (j) { if (!j.enabled) $('joins-msg').textContent = 'this node takes no LAN join requests'; renderJoins(j.pending); }).catch(function (e) { fail('joins-msg', e); });
    loadFiles();
    loadConflicts();
    stream();
  });
})();
`;

const BODY = String.raw`
<header><h1>DelugeFS <span id="cluster"></span></h1><span>node <span id="node" class="mono"></span></span><span id="verdict">HEALTH_?</span><span id="live" class="off">connecting</span></header>
<main>
<section id="health"><h2>Health</h2><ul id="checks"></ul><div id="checks-msg" class="msg"></div>
<div class="nums"><span>members</span><span id="members"></span><span>machines</span><span id="machines"></span><span>disks</span><span id="disk-count"></span><span>states</span><span id="up"></span><span>last update</span><span id="updated"></span></div></section>
<section><h2>Cluster map</h2><div id="map"></div></section>
<section id="replication"><h2>Replication</h2><div class="bar"><div id="repl-fill" class="fill"></div></div><div id="repl-text" class="msg"></div><div class="nums">
<span>content ids</span><span id="ids"></span><span>copies kept</span><span id="copies"></span><span>under target</span><span id="under"></span><span>lost</span><span id="lost"></span>
<span>fetching (this disk)</span><span id="fetching"></span><span>queued</span><span id="queued"></span><span>judged at</span><span id="judged"></span>
<span>files</span><span id="ns-files"></span><span>directories</span><span id="ns-dirs"></span><span>bytes</span><span id="ns-bytes"></span></div></section>
<section id="transfer"><h2>Transfers</h2><div class="nums">
<span>receiving</span><span id="down-rate"></span><span>sending</span><span id="up-rate"></span><span>received</span><span id="downloaded"></span><span>sent</span><span id="uploaded"></span>
<span>connections</span><span id="conns"></span><span>torrents</span><span id="torrents"></span><span>copies held here</span><span id="repl-held"></span><span>copies being fetched</span><span id="repl-fetching"></span><span>copies queued</span><span id="repl-queued"></span><span>surplus (last round)</span><span id="repl-dropped"></span></div></section>
<section><h2>Peers</h2><table><thead><tr><th>node</th><th>machine</th><th>state</th><th>reached at</th><th>sync</th><th>swarm</th></tr></thead><tbody id="peers"></tbody></table></section>
<section id="joins-box"><h2>Pending joins (<span id="joins-count">0</span>)</h2><p class="hint">Approve only a request whose code the new machine's own screen shows: its name and address are its own claims.</p><table><thead><tr><th>code</th><th>node</th><th>machine (claimed)</th><th>address</th><th>since</th><th></th></tr></thead><tbody id="joins"></tbody></table><div id="joins-msg" class="msg"></div></section>
<section id="files-box"><h2>Files</h2><div id="files-nav"><button id="files-up">up</button><span id="path" class="mono"></span><span id="files-count"></span><button id="files-prev">prev</button><button id="files-next">next</button></div>
<table><thead><tr><th>name</th><th>type</th><th>size</th><th>copies</th><th>held by</th></tr></thead><tbody id="files"></tbody></table><div id="files-msg" class="msg"></div></section>
<section id="conflicts-box"><h2>Conflicts (<span id="conflicts-count">0</span>)</h2><table><thead><tr><th>conflict copy</th><th>original</th><th>from</th><th>kept aside</th><th>now at the original</th></tr></thead><tbody id="conflicts"></tbody></table><div id="conflicts-msg" class="msg"></div></section>
</main>
`;

const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

export const PAGE = `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" content="no-referrer"><title>DelugeFS dashboard</title><style>${STYLE}</style><script>${SCRIPT}</script></head><body data-updates="0">${BODY}</body></html>\n`;

/** This page's script and style, nothing else: no inline handlers, no other origin, no frames. */
export const PAGE_CSP = `default-src 'none'; script-src ${hash(SCRIPT)}; style-src ${hash(STYLE)}; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
