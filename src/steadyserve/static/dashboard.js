// The dashboard: polls the control API (the session cookie authorises reading) and draws the
// page. Every text that came from a service, a caller or a log goes in with textContent.
(function () {
  "use strict";
  const POLL_MS = 2000;
  const charts = {};  // chart key -> uPlot
  let chartDeployment = null;
  let logQuery = null;

  async function get(path) {
    const response = await fetch(path, {credentials: "same-origin", headers: {accept: "application/json"}});
    if (response.status === 401 || response.status === 403) {
      window.location.assign("/ui/login");
      throw new Error("logged out");
    }
    if (response.status === 404) return null;  // a part this instance does not run
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "-" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fill(tableId, items, columns, empty) {
    const body = document.querySelector("#" + tableId + " tbody");
    body.replaceChildren();
    if (!items || items.length === 0) {
      const row = document.createElement("tr");
      cell(row, empty, "muted").colSpan = columns.length;
      body.appendChild(row);
      return;
    }
    for (const item of items) {
      const row = document.createElement("tr");
      for (const column of columns) {
        const value = typeof column === "function" ? column(item) : item[column];
        const td = cell(row, Array.isArray(value) ? value[0] : value, Array.isArray(value) ? value[1] : null);
        if (column === "message") td.className = "message";
      }
      body.appendChild(row);
    }
  }

  const time = ts => new Date(ts * 1000).toLocaleTimeString();

  function drawChart(key, title, t, series) {
    const data = [t].concat(series.map(s => s.values));
    if (charts[key]) {
      charts[key].setData(data);
      return;
    }
    const box = document.createElement("div");
    box.className = "chart";
    box.id = "chart-" + key;
    document.getElementById("charts").appendChild(box);
    charts[key] = new uPlot({
      title: title, width: 520, height: 200,
      series: [{}].concat(series.map(s => ({label: s.label, stroke: s.color, width: 1.5}))),
      axes: [{}, {size: 55}],
    }, data, box);
  }

  async function refreshCharts() {
    if (!chartDeployment) return;
    const minutes = document.getElementById("chart-minutes").value;
    const d = await get("/v1/charts?deployment=" + encodeURIComponent(chartDeployment) + "&minutes=" + minutes);
    if (!d) return;
    drawChart("calls", "calls / s", d.t, [{label: "calls/s", color: "#268bd2", values: d.calls_per_s}]);
    drawChart("latency", "latency (ms)", d.t, [{label: "p50", color: "#2aa198", values: d.p50_ms},
                                              {label: "p99", color: "#b58900", values: d.p99_ms}]);
    drawChart("errors", "error ratio", d.t, [{label: "errors", color: "#dc322f", values: d.error_ratio}]);
    drawChart("shed", "shed ratio", d.t, [{label: "shed", color: "#6c71c4", values: d.shed_ratio}]);
    const counts = [{label: "ready", color: "#859900", values: d.ready}];
    if (d.desired && d.desired.some(v => v !== null)) {
      counts.push({label: "autoscaler", color: "#cb4b16", values: d.desired});
    }
    drawChart("replicas", "replicas", d.t, counts);
    const points = d.calls_per_s.filter(v => v !== null && v > 0).length;
    document.body.dataset.chartPoints = String(points);
  }

  function chooseDeployment(names) {
    const select = document.getElementById("chart-deployment");
    const known = Array.from(select.options).map(o => o.value);
    if (known.join() !== names.join()) {
      select.replaceChildren(...names.map(name => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        return option;
      }));
    }
    if (!chartDeployment || !names.includes(chartDeployment)) chartDeployment = names[0] || null;
    select.value = chartDeployment || "";
  }

  async function refreshLogs() {
    if (logQuery === null) return;
    const found = await get("/v1/logs?" + logQuery);
    fill("logs", found, [r => time(r.ts), "level", "source", "request_id", "message"], "no matching lines");
  }

  async function refresh() {
    try {
      const [deployments, replicas, events, alerts, slos, scaled] = await Promise.all([
        get("/v1/deployments"), get("/v1/replicas"), get("/v1/events?limit=50"), get("/v1/alerts"), get("/v1/slo"),
        get("/v1/events?type=autoscaled&limit=20"),
      ]);
      const scaling = (deployments || []).filter(d => d.autoscaling);
      fill("autoscaling", scaling, ["name", d => d.autoscaling.desired + " (" + d.ready + " ready)",
        d => d.autoscaling.min + ".." + d.autoscaling.max,
        d => (d.autoscaling.load === null ? "-" : Number(d.autoscaling.load).toPrecision(3)) + " / "
          + d.autoscaling.target + " " + d.autoscaling.metric,
        d => [d.autoscaling.mode, "mode-" + d.autoscaling.mode], d => d.autoscaling.predictive || "-",
        d => d.autoscaling.capacity ? [d.autoscaling.capacity, "capacity-limited"] : "fits",
        d => d.autoscaling.last_change || d.autoscaling.reason], "no autoscaled deployments");
      fill("scaling-events", (scaled || []).slice().reverse(),
        [e => time(e.ts), e => e.deployment || "-", "message"], "no scaling decisions yet");
      fill("deployments", deployments, ["name", "revision", "replicas", "ready",
        d => d.deleting ? "deleting" : d.rolling_out_from ? "rolling out from " + d.rolling_out_from : "steady"],
        "no deployments");
      fill("replicas", replicas, ["kind", d => d.deployment || "-", "id", r => [r.state, "state-" + r.state],
        "pid", "restarts", "revision"], "no processes");
      fill("events", (events || []).slice().reverse(),
        [e => time(e.ts), e => e.deployment || "-", "subject", "type", "message"], "no events");
      const active = alerts === null ? null : alerts.active;
      fill("alerts", active, ["alertname", "deployment", "severity", a => [a.state, a.state],
        a => a.active_since ? time(a.active_since) : "-", "summary"],
        alerts === null ? "alerting is not available" : "none pending or firing");
      const percent = v => v === null || v === undefined ? "-" : (v * 100).toFixed(3) + "%";
      fill("slos", slos, [s => s.deployment + " (" + s.sli + ")", s => percent(s.objective),
        s => percent(s.sli_value), s => percent(s.budget_remaining)], "no SLOs");
      chooseDeployment((deployments || []).map(d => d.name));
      await refreshCharts();
      await refreshLogs();
      document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.refreshed = String(Date.now());
    } catch (error) {
      document.getElementById("status").textContent = "update failed: " + error.message;
    }
  }

  document.getElementById("chart-deployment").addEventListener("change", event => {
    chartDeployment = event.target.value;
    for (const key of Object.keys(charts)) { charts[key].destroy(); delete charts[key]; }
    document.getElementById("charts").replaceChildren();
    refreshCharts();
  });
  document.getElementById("chart-minutes").addEventListener("change", () => refreshCharts());
  document.getElementById("log-search").addEventListener("submit", event => {
    event.preventDefault();
    const form = new FormData(event.target);
    const params = new URLSearchParams({limit: "200"});
    for (const key of ["grep", "request_id", "level"]) {
      const value = String(form.get(key) || "").trim();
      if (value) params.set(key, value);
    }
    logQuery = params.toString();
    refreshLogs();
  });
  refresh();
  setInterval(refresh, POLL_MS);
})();
