/* wsgiprof flamegraph: an icicle chart (roots on top) drawn as SVG from flame.json.
 * Data: frames [[name, file, line, offCpu, kind]] and a call trie in flat arrays
 * (parent, frame, cpu, wall, samples), a parent before its children.
 * Only frames at least half a pixel wide are drawn, so the DOM stays small at any data size.
 * A differential flamegraph (data with a "diff" field) has weights "a" and "b" (CPU per request
 * before and after) instead of cpu and wall: widths follow the mode, colours the change.
 * Offline reports define window.WSGIPROF_FLAME_DATA in a script file instead of a URL to fetch.
 * Every data-derived string goes into textContent or setAttribute, never into HTML. */
(function () {
  'use strict';

  var SVG = 'http://www.w3.org/2000/svg';
  var ROW = 18;
  var MIN_WIDTH = 0.5;
  var CHAR = 6.6;
  var TABLE_ROWS = 200;

  var container = document.getElementById('flame');
  if (!container) return;
  var tip = document.getElementById('flame-tip');
  var note = document.getElementById('flame-note');
  var searchBox = document.getElementById('flame-search');
  var matchLine = document.getElementById('flame-match');
  var resetButton = document.getElementById('flame-reset');
  var modeInputs = document.querySelectorAll('input[name="mode"]');
  var functionsBody = document.querySelector('#functions tbody');

  var data = null;
  var n = 0;
  var parent, frameOf, childStart, childList, roots;
  var mode = 'cpu';
  var values = null;
  var total = 0;
  var focus = -1;
  var matches = null;   // Uint8Array per frame, or null when no search
  var svg = null;

  function shortFile(file) {
    if (file.charAt(0) === '<') return file;
    var parts = file.replace(/\\/g, '/').split('/');
    return parts.slice(-2).join('/');
  }

  function where(frame) {
    var file = frame[1];
    return file.charAt(0) === '<' ? file : shortFile(file) + ':' + frame[2];
  }

  function label(frame) {
    return frame[1].charAt(0) === '<' ? frame[0] : frame[0] + ' (' + where(frame) + ')';
  }

  function formatMs(us) {
    var ms = us / 1000;
    if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
    if (ms >= 10) return ms.toFixed(0) + ' ms';
    return ms.toFixed(2) + ' ms';
  }

  function formatPercent(part, whole) {
    if (!whole) return '0%';
    var p = 100 * part / whole;
    return (p >= 10 ? p.toFixed(0) : p.toFixed(1)) + '%';
  }

  // Colours: warm for the application, blue for packages, green for the standard library,
  // violet for C functions, grey for wsgiprof's own frames; a stable shade per name.
  function hash(text) {
    var h = 0;
    for (var i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
    return Math.abs(h);
  }

  var PALETTE = {
    app: [14, 30, 62, 72],
    lib: [205, 25, 55, 70],
    std: [150, 25, 42, 68],
    builtin: [270, 25, 45, 72],
    endpoint: [220, 10, 30, 78],
    synthetic: [0, 0, 0, 80]
  };

  // Differential colours: red where a frame costs more per request after, blue where less;
  // the stronger the change (relative to the larger of the two), the deeper the colour.
  function diffColour(node) {
    var a = data.nodes.a[node];
    var b = data.nodes.b[node];
    var larger = Math.max(a, b);
    var change = larger > 0 ? (b - a) / larger : 0;
    if (Math.abs(change) < 0.05) return 'hsl(40,8%,82%)';
    var depth = Math.min(Math.abs(change), 1);
    return change > 0
      ? 'hsl(0,' + (45 + 40 * depth).toFixed(0) + '%,' + (82 - 30 * depth).toFixed(0) + '%)'
      : 'hsl(215,' + (45 + 40 * depth).toFixed(0) + '%,' + (82 - 30 * depth).toFixed(0) + '%)';
  }

  function changeText(a, b) {
    if (a <= 0) return b > 0 ? 'new' : 'none';
    var p = 100 * (b / a - 1);
    return (p >= 0 ? '+' : '') + (Math.abs(p) >= 10 ? p.toFixed(0) : p.toFixed(1)) + '%';
  }

  function colour(frame) {
    var p = PALETTE[frame[4]] || PALETTE.app;
    var h = hash(frame[0]);
    var hue = p[0] + (p[1] ? h % p[1] : 0);
    var sat = p[2] ? p[2] + (h >> 5) % 15 : 0;
    var light = p[3] - (h >> 9) % 10;
    return 'hsl(' + hue + ',' + sat + '%,' + light + '%)';
  }

  function build(json) {
    data = json;
    n = json.nodes.parent.length;
    parent = Int32Array.from(json.nodes.parent);
    frameOf = Int32Array.from(json.nodes.frame);
    var counts = new Int32Array(n + 1);
    var rootList = [];
    for (var i = 0; i < n; i++) {
      if (parent[i] < 0) rootList.push(i); else counts[parent[i]]++;
    }
    childStart = new Int32Array(n + 1);
    for (i = 0; i < n; i++) childStart[i + 1] = childStart[i] + counts[i];
    childList = new Int32Array(childStart[n]);
    var fill = childStart.slice(0, n);
    for (i = 0; i < n; i++) if (parent[i] >= 0) childList[fill[parent[i]]++] = i;
    // Children in name order, so both modes keep the same left-to-right layout.
    var names = json.frames.map(function (f) { return f[0]; });
    var order = names.map(function (_, k) { return k; }).sort(function (a, b) {
      return names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : a - b;
    });
    var rank = new Int32Array(names.length);
    order.forEach(function (k, r) { rank[k] = r; });
    var byName = function (a, b) { return rank[frameOf[a]] - rank[frameOf[b]]; };
    for (i = 0; i < n; i++) {
      if (childStart[i + 1] - childStart[i] > 1) {
        childList.subarray(childStart[i], childStart[i + 1]).sort(byName);
      }
    }
    roots = Int32Array.from(rootList.sort(byName));
  }

  function setMode(next) {
    mode = next;
    values = data.nodes[mode];
    total = data.totals[mode];
  }

  function focusValue() { return focus < 0 ? total : values[focus]; }

  function depthOf(node) {
    var d = 0;
    while (parent[node] >= 0) { node = parent[node]; d++; }
    return d;
  }

  function el(name, attrs) {
    var e = document.createElementNS(SVG, name);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    return e;
  }

  function drawFrame(group, node, x, depth, w) {
    var frame = data.frames[frameOf[node]];
    var g = el('g', { 'class': 'frame', 'data-i': node });
    g.setAttribute('aria-label', label(frame));
    if (data.diff) g.setAttribute('data-change', changeText(data.nodes.a[node], data.nodes.b[node]));
    if (matches) g.setAttribute('class', matches[frameOf[node]] ? 'frame match' : 'frame dim');
    var fill = data.diff ? diffColour(node) : frame[3] ? 'url(#flame-hatch)' : colour(frame);
    g.appendChild(el('rect', {
      x: x.toFixed(2), y: depth * ROW, width: Math.max(w - 0.5, 0.5).toFixed(2),
      height: ROW - 1, fill: fill, rx: 1.5
    }));
    if (w > 28) {
      var text = el('text', { x: (x + 4).toFixed(2), y: depth * ROW + 12.5 });
      var name = frame[0];
      var room = Math.floor((w - 8) / CHAR);
      text.textContent = name.length <= room ? name : name.slice(0, Math.max(room - 1, 1)) + '…';
      g.appendChild(text);
    }
    group.appendChild(g);
  }

  function render() {
    var width = Math.max(container.clientWidth, 320);
    var fragment = el('g', {});
    var maxDepth = 0;
    var baseDepth = 0;
    var whole = focusValue();
    if (focus >= 0) {
      // The focused frame and its ancestors span the full width.
      var chain = [];
      for (var a = focus; a >= 0; a = parent[a]) chain.push(a);
      chain.reverse();
      chain.forEach(function (node, d) { drawFrame(fragment, node, 0, d, width); });
      baseDepth = chain.length;
      maxDepth = baseDepth;
    }
    var scale = whole > 0 ? width / whole : 0;
    // Iterative walk over sibling ranges: [first, end, x, depth, inChildList].
    var level = [];
    if (focus >= 0) level.push([childStart[focus], childStart[focus + 1], 0, baseDepth, true]);
    else level.push([0, roots.length, 0, 0, false]);
    while (level.length) {
      var job = level.pop();
      var x = job[2];
      for (var c = job[0]; c < job[1]; c++) {
        var node = job[4] ? childList[c] : roots[c];
        var v = values[node];
        if (v <= 0) continue;
        var w = v * scale;
        if (w >= MIN_WIDTH) {
          drawFrame(fragment, node, x, job[3], w);
          if (job[3] + 1 > maxDepth) maxDepth = job[3] + 1;
          if (childStart[node + 1] > childStart[node]) {
            level.push([childStart[node], childStart[node + 1], x, job[3] + 1, true]);
          }
        }
        x += w;
      }
    }
    var height = Math.max(maxDepth, 1) * ROW;
    var next = el('svg', {
      width: width, height: height, viewBox: '0 0 ' + width + ' ' + height,
      'class': 'flame-svg', role: 'img'
    });
    next.setAttribute('aria-label', 'Flamegraph of ' + data.name + ' by ' + mode + ' time');
    var defs = el('defs', {});
    var pattern = el('pattern', {
      id: 'flame-hatch', width: 6, height: 6, patternUnits: 'userSpaceOnUse',
      patternTransform: 'rotate(45)'
    });
    pattern.appendChild(el('rect', { width: 6, height: 6, fill: '#d5d8dc' }));
    pattern.appendChild(el('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#8a9099', 'stroke-width': 2.5 }));
    defs.appendChild(pattern);
    next.appendChild(defs);
    next.appendChild(fragment);
    if (svg) container.replaceChild(next, svg); else { container.textContent = ''; container.appendChild(next); }
    svg = next;
    resetButton.disabled = focus < 0;
    container.setAttribute('data-mode', mode);
    container.setAttribute('data-focus', String(focus));
  }

  // Self and total time per frame (total counts each stack once, even under recursion).
  function functionTable() {
    if (!functionsBody) return;
    var nf = data.frames.length;
    var self = new Float64Array(nf);
    var tot = new Float64Array(nf);
    var onPath = new Int32Array(nf);
    var stack = [];
    for (var r = roots.length - 1; r >= 0; r--) stack.push(roots[r]);
    while (stack.length) {
      var item = stack.pop();
      if (item < 0) { onPath[frameOf[~item]]--; continue; }
      var f = frameOf[item];
      var v = values[item];
      var childSum = 0;
      for (var c = childStart[item]; c < childStart[item + 1]; c++) childSum += values[childList[c]];
      self[f] += v - childSum;
      if (onPath[f] === 0) tot[f] += v;
      onPath[f]++;
      stack.push(~item);
      for (c = childStart[item + 1] - 1; c >= childStart[item]; c--) stack.push(childList[c]);
    }
    var ids = [];
    for (f = 0; f < nf; f++) if (tot[f] > 0) ids.push(f);
    ids.sort(function (a, b) { return self[b] - self[a] || tot[b] - tot[a]; });
    var fragment = document.createDocumentFragment();
    ids.slice(0, TABLE_ROWS).forEach(function (fi) {
      var frame = data.frames[fi];
      var tr = document.createElement('tr');
      var cells = [
        [frame[0] + (frame[3] ? ' (off-CPU)' : ''), null],
        [where(frame), null],
        [formatMs(self[fi]), self[fi]],
        [formatPercent(self[fi], total), self[fi]],
        [formatMs(tot[fi]), tot[fi]],
        [formatPercent(tot[fi], total), tot[fi]]
      ];
      cells.forEach(function (cell, index) {
        var td = document.createElement(index === 0 ? 'th' : 'td');
        if (index === 0) td.setAttribute('scope', 'row');
        td.textContent = cell[0];
        if (cell[1] !== null) { td.setAttribute('data-sort', String(cell[1])); td.className = 'num'; }
        if (index === 1) td.title = frame[1];
        tr.appendChild(td);
      });
      fragment.appendChild(tr);
    });
    functionsBody.textContent = '';
    functionsBody.appendChild(fragment);
    var heads = document.querySelectorAll('#functions th[scope="col"]');
    Array.prototype.forEach.call(heads, function (th, i) {
      if (i === 2) th.setAttribute('aria-sort', 'descending'); else th.removeAttribute('aria-sort');
    });
  }

  function applySearch() {
    var query = searchBox.value.trim().toLowerCase();
    if (!query) {
      matches = null;
      matchLine.textContent = '';
      render();
      return;
    }
    var nf = data.frames.length;
    matches = new Uint8Array(nf);
    var names = 0;
    for (var f = 0; f < nf; f++) {
      var frame = data.frames[f];
      if (frame[0].toLowerCase().indexOf(query) >= 0 || frame[1].toLowerCase().indexOf(query) >= 0) {
        matches[f] = 1;
        names++;
      }
    }
    // Share: nodes that match with no matching ancestor, so nested matches count once.
    var covered = new Uint8Array(n);
    var sum = 0;
    for (var i = 0; i < n; i++) {
      var up = parent[i] >= 0 ? covered[parent[i]] : 0;
      if (matches[frameOf[i]] && !up) sum += values[i];
      covered[i] = up || matches[frameOf[i]];
    }
    var measure = data.diff ? 'CPU per request' : (mode === 'cpu' ? 'CPU' : 'wall') + ' time';
    matchLine.textContent = names
      ? names + (names === 1 ? ' function matches: ' : ' functions match: ') +
        formatPercent(sum, total) + ' of ' + measure + ' (' + formatMs(sum) + ')'
      : 'No match';
    matchLine.setAttribute('data-share', total ? String(sum / total) : '0');
    render();
  }

  function showTip(node, event) {
    var frame = data.frames[frameOf[node]];
    var v = values[node];
    var childSum = 0;
    for (var c = childStart[node]; c < childStart[node + 1]; c++) childSum += values[childList[c]];
    var modeName = mode === 'cpu' ? 'CPU' : 'wall';
    if (data.diff) {
      var a = data.nodes.a[node];
      var b = data.nodes.b[node];
      var diffLines = [
        [frame[0], 'tip-name'],
        [frame[1] + (frame[1].charAt(0) === '<' ? '' : ':' + frame[2]), 'tip-file'],
        ['Before (' + data.diff.a + '): ' + formatMs(a) + ' CPU per request', ''],
        ['After (' + data.diff.b + '): ' + formatMs(b) + ' CPU per request', ''],
        ['Change: ' + changeText(a, b), 'tip-change']
      ];
      tip.textContent = '';
      diffLines.forEach(function (line) {
        var div = document.createElement('div');
        div.textContent = line[0];
        if (line[1]) div.className = line[1];
        tip.appendChild(div);
      });
      tip.hidden = false;
      tip.style.left = Math.max(4, event.pageX + 14) + 'px';
      tip.style.top = (event.pageY + 14) + 'px';
      return;
    }
    var lines = [
      [frame[0], 'tip-name'],
      [frame[1] + (frame[1].charAt(0) === '<' ? '' : ':' + frame[2]), 'tip-file'],
      ['Total ' + modeName + ': ' + formatMs(v) + ' (' + formatPercent(v, total) + ')', ''],
      ['Self ' + modeName + ': ' + formatMs(v - childSum) + ' (' + formatPercent(v - childSum, total) + ')', ''],
      ['Samples: ' + data.nodes.samples[node], 'tip-muted']
    ];
    if (frame[3]) lines.push(['Off-CPU: the thread waited here', 'tip-muted']);
    if (focus >= 0 && node !== focus) lines.splice(3, 0, ['Of the zoomed frame: ' + formatPercent(v, focusValue()), '']);
    tip.textContent = '';
    lines.forEach(function (line) {
      var div = document.createElement('div');
      div.textContent = line[0];
      if (line[1]) div.className = line[1];
      tip.appendChild(div);
    });
    tip.hidden = false;
    var x = event.pageX + 14;
    var y = event.pageY + 14;
    var room = document.documentElement.clientWidth - tip.offsetWidth - 8;
    tip.style.left = Math.max(4, Math.min(x, room + window.scrollX)) + 'px';
    tip.style.top = y + 'px';
  }

  function nodeOf(target) {
    var g = target && target.closest ? target.closest('g.frame') : null;
    return g ? parseInt(g.getAttribute('data-i'), 10) : -1;
  }

  function zoom(node) {
    focus = node;
    tip.hidden = true;
    render();
  }

  function start(json) {
    build(json);
    setMode(document.querySelector('input[name="mode"]:checked').value || 'cpu');
    render();
    functionTable();
    var extra = [];
    if (json.diff) {
      extra.push('Widths: CPU per request ' + (mode === 'a' ? 'before (' + json.diff.a + ')' : 'after (' + json.diff.b + ')') +
        ', each endpoint per request of its own; colours: red grew, blue shrank.');
    } else if (json.omitted_stacks) extra.push(json.omitted_stacks + ' of ' + json.stacks + ' stacks are too light to draw on their own and are folded into [other stacks].');
    if (!json.diff) extra.push(json.stacks + ' stacks from ' + json.sampled + ' profiled requests; frames narrower than half a pixel are hidden until you zoom in.');
    note.textContent = extra.join(' ');

    container.addEventListener('click', function (event) {
      var node = nodeOf(event.target);
      if (node >= 0) zoom(node === focus && parent[node] >= 0 ? parent[node] : node);
    });
    container.addEventListener('mousemove', function (event) {
      var node = nodeOf(event.target);
      if (node >= 0) showTip(node, event); else tip.hidden = true;
    });
    container.addEventListener('mouseleave', function () { tip.hidden = true; });
    container.addEventListener('keydown', function (event) {
      if (event.key === 'Escape') zoom(-1);
    });
    resetButton.addEventListener('click', function () { zoom(-1); });
    Array.prototype.forEach.call(modeInputs, function (input) {
      input.addEventListener('change', function () {
        if (!input.checked) return;
        setMode(input.value);
        if (focus >= 0 && values[focus] <= 0) focus = -1;
        functionTable();
        applySearch();
      });
    });
    var timer = null;
    searchBox.addEventListener('input', function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(applySearch, 120);
    });
    var resizeTimer = null;
    window.addEventListener('resize', function () {
      window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(render, 150);
    });
    container.setAttribute('data-ready', '1');
    if (window.performance && performance.mark) performance.mark('wsgiprof-flame-ready');
  }

  if (window.WSGIPROF_FLAME_DATA) {
    start(window.WSGIPROF_FLAME_DATA);
    return;
  }
  fetch(container.getAttribute('data-src'), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
    .then(function (response) {
      if (!response.ok) throw new Error('HTTP ' + response.status);
      return response.json();
    })
    .then(start)
    .catch(function (error) {
      container.textContent = '';
      var p = document.createElement('p');
      p.className = 'error';
      p.textContent = 'Could not load the flamegraph: ' + error.message;
      container.appendChild(p);
    });
})();
