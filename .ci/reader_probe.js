/* The reader's probe, injected by check_html.py at the top of <head> of a copy of each page (as one
   line: only block comments here). It records console errors from the start; once the page and
   MathJax have settled it expands collapsed cells, measures, collects the text of prose and
   outputs, and writes everything as JSON into <html data-reader-check="...">. */
(function () {
  var errors = [];
  function note(m) { errors.push(String(m).slice(0, 300)); }
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      note('could not load ' + t.tagName.toLowerCase() + ' ' + (t.currentSrc || t.src || t.href || ''));
    } else {
      var file = e.filename && e.filename !== location.href ? e.filename.split('/').pop() : '';
      note((e.message || 'error') + (file ? ' (' + file + ')' : ''));
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) {
    note('Uncaught (in promise) ' + String(e.reason));
  });
  var consoleError = console.error;
  console.error = function () {
    note('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    return consoleError.apply(console, arguments);
  };

  function clean(s) { return (s || '').replace(/\s+/g, ' ').replace(/#\s*$/, '').trim(); }

  function sectionOf(el, title) {
    var s = el.closest('section');
    while (s) {
      var h = s.querySelector(':scope > h1, :scope > h2, :scope > h3, :scope > h4, :scope > h5, :scope > h6');
      if (h) { return clean(h.textContent); }
      s = s.parentElement && s.parentElement.closest('section');
    }
    return title;
  }

  function label(el) {
    var tag = el.tagName.toLowerCase();
    if (tag === 'pre') {
      var lines = el.textContent.split('\n');
      var longest = Math.max.apply(null, lines.map(function (l) { return l.length; }));
      var first = lines.filter(function (l) { return l.trim(); })[0] || '';
      return 'longest line ' + longest + ' characters; starts "' + clean(first).slice(0, 40) + '"';
    }
    if (tag === 'table') {
      var head = Array.prototype.map.call(el.querySelectorAll('thead th, tr:first-child th, tr:first-child td'),
                                          function (c) { return clean(c.textContent); });
      return head.filter(function (x) { return x; }).join(', ');
    }
    var src = el.getAttribute('src') || '';
    return (el.getAttribute('alt') || '') + ' ' + (src.indexOf('data:') === 0 ? 'data: URI' : src.split('/').pop());
  }

  function measure() {
    var col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    var title = clean((document.querySelector('h1') || {}).textContent || document.title);
    var closed = Array.prototype.slice.call(col.querySelectorAll('details:not([open])'));
    closed.forEach(function (d) { d.open = true; });
    col.querySelectorAll('.toggle-hidden').forEach(function (e) { e.classList.remove('toggle-hidden'); });
    function collapsed(el) { return closed.some(function (d) { return d.contains(el); }); }

    var cs = getComputedStyle(col), cr = col.getBoundingClientRect();
    var left = cr.left + parseFloat(cs.paddingLeft), right = cr.right - parseFloat(cs.paddingRight);
    var wide = [];
    col.querySelectorAll('pre, table, img').forEach(function (el) {
      if (!el.getClientRects().length) { return; }
      var r = el.getBoundingClientRect(), vl = left, vr = right;
      for (var a = el.parentElement; a && a !== col; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== 'visible') {
          var ar = a.getBoundingClientRect();
          vl = Math.max(vl, ar.left); vr = Math.min(vr, ar.right);
        }
      }
      var scroll = el.clientWidth > 0 ? el.scrollWidth - el.clientWidth : 0;
      var over = Math.max(scroll, r.right - vr, vl - r.left);
      if (over > 1) {
        var tag = el.tagName.toLowerCase();
        var kind = tag === 'pre' ? (el.closest('.cell_output') ? 'output block' : 'code block') :
                   (tag === 'table' ? 'table' : 'image');
        wide.push({kind: kind, over: Math.round(over), width: Math.round(Math.max(r.width, el.scrollWidth)),
                   column: Math.round(right - left), section: sectionOf(el, title),
                   collapsed: collapsed(el), label: label(el)});
      }
    });

    var nanTables = [];
    col.querySelectorAll('table').forEach(function (t) {
      var cells = t.querySelectorAll('td, th'), bad = [];
      cells.forEach(function (c) {
        var s = c.textContent.trim();
        if (/^[-+]?nan%?$/i.test(s) || s === '<NA>' || s === 'NaT') { bad.push(s); }
      });
      if (bad.length) {
        nanTables.push({n: bad.length, cells: cells.length, section: sectionOf(t, title), label: label(t),
                        values: bad.filter(function (v, i) { return bad.indexOf(v) === i; })});
      }
    });

    var images = Array.prototype.map.call(col.querySelectorAll('img'), function (img) {
      return {src: img.getAttribute('src') || '', section: sectionOf(img, title)};
    });

    var skip = 'script, style, mjx-container, .math, .headerlink, .cell_input, summary, .copybtn';
    var blocks = [], current = null, blockOf = new Map();
    function block(el) {
      if (blockOf.has(el)) { return blockOf.get(el); }
      var b = el;
      while (b !== col && getComputedStyle(b).display.indexOf('inline') === 0) { b = b.parentElement; }
      blockOf.set(el, b);
      return b;
    }
    var walker = document.createTreeWalker(col, NodeFilter.SHOW_TEXT);
    for (var node = walker.nextNode(); node; node = walker.nextNode()) {
      var p = node.parentElement;
      if (!p || p.closest(skip)) { continue; }
      var output = !!p.closest('.cell_output');
      if (!output && p.closest('pre, code, kbd, div.highlight, .literal-block')) { continue; }
      var b = block(p);
      if (!current || current.el !== b) {
        current = {el: b, kind: output ? 'output' : 'prose', section: sectionOf(p, title), text: ''};
        blocks.push(current);
      }
      current.text += node.textContent;
    }
    blocks = blocks.map(function (x) { return {kind: x.kind, section: x.section, text: x.text.replace(/[ \t]+/g, ' ')}; })
                   .filter(function (x) { return x.text.trim(); });

    return {viewport: window.innerWidth, errors: errors, wide: wide, nan_tables: nanTables,
            images: images, blocks: blocks};
  }

  var done = false;
  function finish() {
    if (done) { return; }
    done = true;
    var result;
    try { result = measure(); } catch (err) { result = {fatal: String(err && err.stack || err)}; }
    document.documentElement.setAttribute('data-reader-check', JSON.stringify(result));
  }
  window.addEventListener('load', function () {
    var mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    Promise.resolve(mj).then(function () { setTimeout(finish, 300); },
                             function () { setTimeout(finish, 300); });
    setTimeout(finish, 8000);
  });
})();
