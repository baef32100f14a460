// Drover dashboard: keeps #live current without a reload. Any event from the stream
// re-fetches the server-rendered part (escaped by html/template, as the page was);
// while a rollout runs it also re-fetches every 2 s, since VMs turning healthy are not
// events of their own.
(function () {
  'use strict';
  var live = document.getElementById('live');
  var conn = document.getElementById('conn');
  if (!live || !window.EventSource || !window.fetch) { return; }
  var src = live.getAttribute('data-src');
  var service = live.getAttribute('data-service');
  var busy = false, again = false, poll = null, debounce = null;

  function state(s) {
    if (!conn) { return; }
    conn.className = 'conn ' + s;
    conn.textContent = s === 'live' ? 'live' : 'reconnecting…';
  }

  function schedulePoll() {
    clearTimeout(poll);
    if (live.querySelector('[data-rolling]')) { poll = setTimeout(refresh, 2000); }
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(src, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        // A login that ended (the token changed) lands on /login: go there.
        if (r.redirected && /\/login$/.test(r.url)) { window.location.assign('/login'); }
        if (!r.ok || r.redirected) { throw new Error('HTTP ' + r.status); }
        return r.text();
      })
      .then(function (html) { live.innerHTML = html; })
      .catch(function () { state('offline'); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); } else { schedulePoll(); }
      });
  }

  function onEvent() {
    // A burst of events (a rollout's VMs created together) costs one fetch.
    clearTimeout(debounce);
    debounce = setTimeout(refresh, 50);
  }

  var url = '/api/v1/events' + (service ? '?service=' + encodeURIComponent(service) : '');
  var es = new EventSource(url);
  (live.getAttribute('data-kinds') || '').split(' ').concat(['message']).forEach(function (k) {
    if (k) { es.addEventListener(k, onEvent); }
  });
  es.onopen = function () { state('live'); refresh(); };
  es.onerror = function () { state('offline'); };
  schedulePoll();
})();
