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

  // Runs page: save the current window under a label; delete a run (click twice).
  function setupRuns() {
    var form = document.getElementById('save-run');
    var status = document.getElementById('run-status');
    if (form && status) {
      form.addEventListener('submit', function (event) {
        event.preventDefault();
        var label = document.getElementById('run-label').value.trim();
        if (!label) return;
        status.textContent = 'Saving…';
        fetch(base + '/api/runs', {
          method: 'POST', credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ label: label })
        })
          .then(function (response) {
            return response.json().then(function (body) {
              if (!response.ok) throw new Error(body.error || 'HTTP ' + response.status);
              status.textContent = 'Saved as run ' + body.run.id + '; a new window started.';
              window.setTimeout(function () { window.location.reload(); }, 400);
            });
          })
          .catch(function (error) { status.textContent = 'Not saved: ' + error.message; });
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll('button.delete-run'), function (button) {
      var armed = false;
      button.addEventListener('click', function () {
        if (!armed) {
          armed = true;
          button.textContent = 'Click again to delete';
          window.setTimeout(function () { armed = false; button.textContent = 'Delete'; }, 5000);
          return;
        }
        button.disabled = true;
        fetch(base + '/api/runs/' + encodeURIComponent(button.getAttribute('data-id')), {
          method: 'DELETE', credentials: 'same-origin'
        })
          .then(function (response) {
            if (!response.ok) throw new Error('HTTP ' + response.status);
            window.location.reload();
          })
          .catch(function (error) {
            button.disabled = false;
            button.textContent = 'Delete failed: ' + error.message;
          });
      });
    });
    var a = document.getElementById('diff-a');
    var b = document.getElementById('diff-b');
    // Preselect the two newest runs: the usual question is "did my last change help?".
    if (a && b && a.options.length > 2) {
      a.selectedIndex = a.options.length - 2;
      b.selectedIndex = b.options.length - 1;
    }
  }

  window.wsgiprof = { sortTable: sortTable };
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), makeSortable);
  setupReset();
  setupRuns();
})();
