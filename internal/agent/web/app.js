// closewait dashboard: auto-refresh with a pause toggle, uPlot detail charts
// drawn from /api/v1/history, copy buttons. The page works without it.
(function () {
  "use strict";
  var body = document.body;
  var interval = parseInt(body.getAttribute("data-interval"), 10) || 15000;
  var pauseBtn = document.getElementById("pause");
  var paused = false;
  try { paused = localStorage.getItem("closewait.paused") === "1"; } catch (e) {}
  var timer = null;

  function schedule() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (!paused) { timer = setTimeout(function () { location.reload(); }, Math.max(interval, 2000)); }
  }
  function showPause() {
    if (!pauseBtn) return;
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    pauseBtn.setAttribute("aria-pressed", paused ? "true" : "false");
  }
  if (pauseBtn) {
    pauseBtn.addEventListener("click", function () {
      paused = !paused;
      try { localStorage.setItem("closewait.paused", paused ? "1" : "0"); } catch (e) {}
      showPause();
      schedule();
    });
  }
  showPause();
  schedule();

  document.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () {
      var el = document.getElementById(b.getAttribute("data-copy"));
      if (el && navigator.clipboard) {
        navigator.clipboard.writeText(el.textContent).then(function () { b.textContent = "Copied"; });
      }
    });
  });

  // A link to #pPID (row click) opens that process's details.
  function openHash() {
    var id = location.hash.slice(1);
    var el = id && document.getElementById(id);
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  window.addEventListener("hashchange", openHash);
  openHash();

  if (typeof uPlot === "undefined") return;
  // Charts drawn while their details were closed get their width on opening.
  document.querySelectorAll("details.detail").forEach(function (d) {
    d.addEventListener("toggle", function () {
      if (!d.open) return;
      d.querySelectorAll(".chart").forEach(function (el) {
        if (el.uplot && el.clientWidth > 0) { el.uplot.setSize({ width: el.clientWidth, height: 180 }); }
      });
    });
  });
  var css = getComputedStyle(document.documentElement);
  function color(name, fallback) { return (css.getPropertyValue(name) || "").trim() || fallback; }
  var cwColor = color("--chart-cw", "#c0392b");
  var fdColor = color("--chart-fd", "#2c7fb8");
  var limColor = color("--chart-limit", "#888");
  var axisColor = color("--fg", "#222");

  // Times in UTC on a 24-hour clock, like the status strip's "last scan".
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function utcTicks(u, splits, axisIdx, space, incr) {
    return splits.map(function (t) {
      var d = new Date(t * 1000);
      var s = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
      return incr < 60 ? s + ":" + pad(d.getUTCSeconds()) : s;
    });
  }
  function axes(unit) {
    return [
      { stroke: axisColor, grid: { stroke: "rgba(128,128,128,0.2)" }, values: utcTicks, label: "UTC", labelSize: 20 },
      { stroke: axisColor, grid: { stroke: "rgba(128,128,128,0.2)" }, label: unit, size: 60 }
    ];
  }
  // Splits on whole UTC minutes and hours, whatever the browser's zone.
  function tzDate(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  // The time axis spans the data, and at least a minute: one point, or
  // scans a moment apart (the same second), would otherwise give no span.
  function timeScale(xs) {
    var hi = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
    var lo = xs.length ? Math.min(xs[0], hi - 60) : hi - 60;
    return { x: { time: true, range: function () { return [lo, hi]; } } };
  }

  function draw(el, pts, kind) {
    var xs = [], a = [], b = [];
    pts.forEach(function (p) {
      xs.push(p.time);
      if (kind === "fd") { a.push(p.open_fds); b.push(p.fd_limit ? p.fd_limit : null); }
      else { a.push(p.close_wait); }
    });
    var width = Math.max(el.clientWidth || 0, 300);
    var opts, data;
    if (kind === "fd") {
      opts = { title: "Open fds vs soft limit", width: width, height: 180, tzDate: tzDate, scales: timeScale(xs), legend: { live: false }, cursor: { sync: { key: "cw" + el.getAttribute("data-pid") } },
        axes: axes("fds"), series: [{}, { label: "open fds", stroke: fdColor, width: 2 }, { label: "soft limit", stroke: limColor, dash: [6, 4], width: 1 }] };
      data = [xs, a, b];
    } else {
      var title = el.hasAttribute("data-total") ? "CLOSE_WAIT on the host" : "CLOSE_WAIT sockets";
      var key = el.hasAttribute("data-total") ? "host" : "cw" + el.getAttribute("data-pid");
      opts = { title: title, width: width, height: 180, tzDate: tzDate, scales: timeScale(xs), legend: { live: false }, cursor: { sync: { key: key } },
        axes: axes("sockets"), series: [{}, { label: "CLOSE_WAIT", stroke: cwColor, fill: "rgba(192,57,43,0.08)", width: 2 }] };
      data = [xs, a];
    }
    el.textContent = "";
    var u = new uPlot(opts, data, el);
    el.uplot = u;
    el.setAttribute("data-drawn", String(pts.length));
  }

  document.querySelectorAll(".chart").forEach(function (el) {
    var pid = el.getAttribute("data-pid");
    var url = pid ? "/api/v1/history?pid=" + encodeURIComponent(pid) : "/api/v1/history";
    fetch(url, { headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
      .then(function (h) { draw(el, h.points || [], el.getAttribute("data-kind") || "cw"); })
      .catch(function (e) { el.textContent = "No chart: " + e.message; el.setAttribute("data-error", e.message); });
  });
})();
