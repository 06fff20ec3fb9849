// jdobb-async-queue dashboard: live refresh of the overview and server-sent events on a job.
// Plain ES2017, no dependencies. Everything from the server is written with textContent.
(function () {
  "use strict";
  var body = document.body;
  var base = body.dataset.base || "";
  var refresh = parseInt(body.dataset.refresh || "2000", 10);
  var STATUSES = ["pending", "processing", "complete", "failed", "cancelled"];
  var TERMINAL = { complete: true, failed: true, cancelled: true };

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function getJSON(path) {
    return fetch(base + path, { headers: { accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); });
  }
  function cell(value) {
    if (value === null || value === undefined) return "—";
    if (Array.isArray(value)) return value.join(", ") || "—";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  // Forms that ask first (Purge).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  });

  // -- overview ---------------------------------------------------------------------------
  function renderStats(data) {
    Object.keys(data.stats).forEach(function (key) {
      document.querySelectorAll('[data-stat="' + key + '"]').forEach(function (node) {
        node.textContent = String(data.stats[key]);
      });
    });
    var table = $("type-table");
    if (!table) return;
    var tbody = el("tbody");
    var names = Object.keys(data.by_type);
    if (!names.length) {
      var tr = el("tr"); var td = el("td", "no jobs", "muted");
      td.colSpan = STATUSES.length + 1; tr.appendChild(td); tbody.appendChild(tr);
    }
    names.forEach(function (name) {
      var tr = el("tr"); var td = el("td"); var a = el("a", name);
      a.href = base + "/jobs?type=" + encodeURIComponent(name);
      td.appendChild(a); tr.appendChild(td);
      STATUSES.forEach(function (s) { tr.appendChild(el("td", data.by_type[name][s] || 0)); });
      tbody.appendChild(tr);
    });
    table.replaceChild(tbody, table.tBodies[0]);
  }

  function renderWorkers(data) {
    var table = $("worker-table");
    if (!table) return;
    var rows = data.workers || [];
    var thead = el("thead"); var head = el("tr"); var tbody = el("tbody");
    var columns = [];
    rows.forEach(function (row) {
      Object.keys(row).forEach(function (k) { if (columns.indexOf(k) < 0) columns.push(k); });
    });
    if (!rows.length) {
      head.appendChild(el("th", "worker"));
      var tr = el("tr");
      tr.appendChild(el("td", data.supported ? "no live workers" : "this queue does not list its workers", "muted"));
      tbody.appendChild(tr);
    }
    columns.forEach(function (c) { head.appendChild(el("th", c)); });
    rows.forEach(function (row) {
      var tr = el("tr");
      columns.forEach(function (c) { tr.appendChild(el("td", cell(row[c]))); });
      tbody.appendChild(tr);
    });
    thead.appendChild(head);
    table.replaceChildren(thead, tbody);
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function renderThroughput(data) {
    var chart = $("throughput");
    if (!chart) return;
    var W = 600, H = 160, top = 14, bottom = 18;
    var points = data.points || [];
    var nodes = [];
    if (!points.length) {
      nodes.push(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "muted" }, "collecting samples…"));
      chart.replaceChildren.apply(chart, nodes);
      return;
    }
    var max = 1;
    points.forEach(function (p) { max = Math.max(max, p.complete + p.failed + p.cancelled); });
    var slot = W / Math.max(points.length, 30);
    var scale = (H - top - bottom) / max;
    nodes.push(svg("line", { x1: 0, x2: W, y1: H - bottom, y2: H - bottom, "class": "axis" }));
    points.forEach(function (p, i) {
      var x = W - (points.length - i) * slot + 1;
      var y = H - bottom;
      ["complete", "failed", "cancelled"].forEach(function (kind) {
        var h = p[kind] * scale;
        if (h <= 0) return;
        y -= h;
        var rect = svg("rect", { x: x.toFixed(1), y: y.toFixed(1), width: Math.max(1, slot - 2).toFixed(1),
          height: h.toFixed(1), "class": "bar-" + kind });
        rect.appendChild(svg("title", {}, kind + ": " + p[kind] + " in " + p.seconds.toFixed(1) + " s"));
        nodes.push(rect);
      });
    });
    var last = points[points.length - 1];
    var rate = (last.complete + last.failed + last.cancelled) / last.seconds;
    nodes.push(svg("text", { x: 4, y: 11, "class": "muted" }, "max " + max + " per " + data.interval + " s"));
    nodes.push(svg("text", { x: W - 4, y: 11, "text-anchor": "end", "class": "muted", id: "throughput-rate" },
      "last: " + rate.toFixed(2) + " jobs/s"));
    nodes.push(svg("text", { x: 4, y: H - 4, "class": "muted" },
      Math.round(points.length * data.interval) + " s ago"));
    nodes.push(svg("text", { x: W - 4, y: H - 4, "text-anchor": "end", "class": "muted" }, "now"));
    chart.replaceChildren.apply(chart, nodes);
  }

  function poll(tasks) {
    var run = function () {
      Promise.all(tasks.map(function (t) { return t().catch(function () { return null; }); }))
        .then(function () { window.setTimeout(run, refresh); });
    };
    run();
  }

  var page = body.dataset.page;
  if (page === "overview") {
    poll([
      function () { return getJSON("/api/stats").then(renderStats); },
      function () { return getJSON("/api/throughput").then(renderThroughput); },
      function () { return getJSON("/api/workers").then(renderWorkers); },
    ]);
  } else if (page === "workers") {
    poll([function () { return getJSON("/api/workers").then(renderWorkers); }]);
  }

  // -- one job: server-sent events --------------------------------------------------------
  if (page === "job") {
    var jobId = body.dataset.jobId;
    var path = "/api/jobs/" + encodeURIComponent(jobId);
    var state = $("live-state");
    var setStatus = function (status) {
      var badge = $("job-status");
      badge.textContent = status;
      badge.className = "badge status-" + status;
      body.dataset.status = status;
      var cancel = $("cancel-form"), retry = $("retry-form");
      if (cancel) cancel.hidden = !!TERMINAL[status];
      if (retry) retry.hidden = !(status === "failed" || status === "cancelled");
    };
    var setProgress = function (progress) {
      $("job-progress").value = progress;
      $("job-progress-text").textContent = Math.round(progress * 100) + "%";
    };
    var fmt = function (iso) { return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "—"; };
    var refreshJob = function () {
      return getJSON(path).then(function (job) {
        setStatus(job.status);
        setProgress(job.progress);
        $("job-message").textContent = job.message || "";
        $("job-results").textContent = job.results === null ? "" : JSON.stringify(job.results, null, 2);
        $("job-error").textContent = job.error || "";
        $("job-attempts").textContent = String(job.attempts);
        $("job-started").textContent = fmt(job.started_at);
        $("job-completed").textContent = fmt(job.completed_at);
        $("job-updated").textContent = fmt(job.updated_at);
        $("job-worker").textContent = job.worker_id || "—";
        $("job-duration").textContent = job.duration === null ? "—" : job.duration.toFixed(3) + " s";
      });
    };
    var lastStatus = body.dataset.status;
    if (window.EventSource) {
      var source = new EventSource(base + path + "/events");
      source.addEventListener("open", function () { state.textContent = "live"; });
      source.addEventListener("update", function (ev) {
        var update = JSON.parse(ev.data);
        var changed = update.status !== lastStatus;
        lastStatus = update.status;
        setStatus(update.status);
        setProgress(update.progress);
        if (update.message !== null) $("job-message").textContent = update.message;
        if (changed) refreshJob().catch(function () {});
      });
      source.addEventListener("end", function () {
        source.close();
        state.textContent = "finished";
        refreshJob().catch(function () {});
      });
      source.addEventListener("gone", function () {
        source.close();
        state.textContent = "this job was deleted";
      });
      source.addEventListener("error", function () { state.textContent = "reconnecting…"; });
    }
  }
})();
