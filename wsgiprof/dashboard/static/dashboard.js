/* wsgiprof dashboard: sortable tables and the reset button. No framework, no inline code. */
(function () {
  'use strict';

  var base = document.body.getAttribute('data-base') || '';

  function cellValue(row, index, type) {
    var cell = row.children[index];
    if (!cell) return null;
    var raw = cell.hasAttribute('data-sort') ? cell.getAttribute('data-sort') : cell.textContent;
    if (type === 'number') {
      var n = parseFloat(raw);
      return isNaN(n) ? null : n;
    }
    return (raw || '').trim().toLowerCase();
  }

  /** Sort a table's body by one column; empty values always go last. */
  function sortTable(table, index, type, descending) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return [cellValue(row, index, type), i, row]; });
    keyed.sort(function (a, b) {
      if (a[0] === null && b[0] === null) return a[1] - b[1];
      if (a[0] === null) return 1;
      if (b[0] === null) return -1;
      if (a[0] < b[0]) return descending ? 1 : -1;
      if (a[0] > b[0]) return descending ? -1 : 1;
      return a[1] - b[1];
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (item) { fragment.appendChild(item[2]); });
    body.appendChild(fragment);
  }

  function makeSortable(table) {
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, index) {
      var button = th.querySelector('button.sort');
      if (!button) return;
      button.addEventListener('click', function () {
        var type = th.getAttribute('data-type') || 'text';
        var current = th.getAttribute('aria-sort');
        // Numbers sort largest first on the first click, names A to Z.
        var descending = current ? current === 'ascending' : type === 'number';
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
        sortTable(table, index, type, descending);
      });
    });
  }

  function setupReset() {
    var button = document.getElementById('reset-window');
    var status = document.getElementById('reset-status');
    if (!button || !status) return;
    var armed = false;
    var timer = null;
    button.addEventListener('click', function () {
      if (!armed) {
        armed = true;
        button.textContent = 'Click again to reset';
        status.textContent = 'This forgets every profile of the window.';
        timer = window.setTimeout(function () {
          armed = false;
          button.textContent = 'Reset window';
          status.textContent = '';
        }, 5000);
        return;
      }
      window.clearTimeout(timer);
      armed = false;
      button.disabled = true;
      status.textContent = 'Resetting…';
      fetch(base + '/api/reset', { method: 'POST', credentials: 'same-origin' })
        .then(function (response) {
          if (!response.ok) throw new Error('HTTP ' + response.status);
          status.textContent = 'New window started.';
          window.setTimeout(function () { window.location.reload(); }, 400);
        })
        .catch(function (error) {
          status.textContent = 'Reset failed: ' + error.message;
          button.disabled = false;
          button.textContent = 'Reset window';
        });
    });
  }

  window.wsgiprof = { sortTable: sortTable };
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), makeSortable);
  setupReset();
})();
