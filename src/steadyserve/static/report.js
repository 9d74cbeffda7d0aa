// Draws the availability report's charts (uPlot) from the JSON embedded in the page.
(function () {
  "use strict";
  const reports = JSON.parse(document.getElementById("report-data").textContent);
  const root = document.getElementById("reports");

  function fmt(value, digits) {
    return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
  }

  function incidentBands(incidents) {
    // A uPlot hook that shades each incident's time span.
    return function (u) {
      const ctx = u.ctx;
      ctx.save();
      ctx.fillStyle = "rgba(220, 50, 47, 0.15)";
      for (const inc of incidents) {
        const x0 = u.valToPos(inc.start, "x", true);
        const x1 = u.valToPos(inc.end, "x", true);
        ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
      }
      ctx.restore();
    };
  }

  function chart(parent, title, steps, series, incidents) {
    const box = document.createElement("div");
    box.className = "chart";
    parent.appendChild(box);
    const width = Math.max(320, Math.min(1100, parent.clientWidth || 900));
    const opts = {
      title: title, width: width, height: 220,
      series: [{}].concat(series.map(s => ({label: s.label, stroke: s.color, width: 1.5, spanGaps: false}))),
      axes: [{}, {size: 60}],
      hooks: {drawClear: [incidentBands(incidents)]},
    };
    const data = [steps.t].concat(series.map(s => s.values));
    return new uPlot(opts, data, box);
  }

  for (const r of reports) {
    const section = document.createElement("section");
    const h = document.createElement("h2");
    h.textContent = r.deployment;
    section.appendChild(h);
    const summary = document.createElement("p");
    summary.textContent = "availability " + (r.availability === null ? "-" : fmt(r.availability * 100, 3) + "%") +
      " of " + fmt(r.calls, 0) + " calls; " + r.incidents.length + " incidents; MTTR " + fmt(r.mttr_s, 1) + " s";
    section.appendChild(summary);
    root.appendChild(section);
    const s = r.steps;
    const interval = s.t.length > 1 ? s.t[1] - s.t[0] : 1;
    const perSecond = values => values.map(v => v === null ? null : v / interval);
    const ms = values => values.map(v => v === null ? null : v * 1000);
    chart(section, "calls / s", s, [
      {label: "calls/s", color: "#268bd2", values: perSecond(s.calls)},
      {label: "failed/s", color: "#dc322f", values: perSecond(s.failed)},
    ], r.incidents);
    chart(section, "latency (ms)", s, [
      {label: "p50", color: "#2aa198", values: ms(s.p50_s)},
      {label: "p99", color: "#b58900", values: ms(s.p99_s)},
    ], r.incidents);
    chart(section, "ready replicas", s, [{label: "ready", color: "#859900", values: s.ready}], r.incidents);
  }
  document.body.setAttribute("data-charts", String(document.querySelectorAll(".uplot").length));
})();
