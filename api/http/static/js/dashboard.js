// The dashboard: GET /api/stats (the query the page built from its filter form) drawn as ECharts
// charts (canvas) and summed into tables of totals, so the numbers shown are the API's. Every count
// (figure, table row, bar or slice) links to the case list filtered to exactly the cases it counts.
"use strict";
(function () {
  const root = document.getElementById("dashboard");
  const statuses = root.dataset.statuses.split(",");
  const openStatuses = new Set(root.dataset.openStatuses.split(","));
  const knownCategories = root.dataset.categories.split(",").filter(Boolean);
  const CATEGORY_COLOURS = { illegal_parking: "#d9480f", street_vending: "#7048e8", piled_debris: "#2b8a3e" };
  const STATUS_COLOURS = {
    pending_review: "#f59f00", filed: "#1c7ed6", dispatched: "#7048e8", handled: "#0ca678",
    verified: "#2f9e44", closed: "#868e96", rejected: "#e03131",
  };
  const TOP_CELLS = 15;
  const MAX_FILLED_DAYS = 366;
  const charts = [];
  let categoryChart = null;

  // the grid cells' names by id (the page's), so that a cell is named as on the map and the report
  const cellNames = JSON.parse(document.getElementById("cell-names").textContent || "{}");

  function label(prefix, key) { return gp.t(prefix + "." + key); }

  function cellName(cell) {
    if (cell === "unassigned") return gp.t("dashboard.unassigned");
    return cellNames[cell] || cell; // a cell a later grid import removed: its code
  }

  function add(map, key, n) { map.set(key, (map.get(key) || 0) + n); }

  // Two sums of GET /api/stats, grouped by the database: category x day (the trend, the categories)
  // and grid cell x status (the statuses, the cells). The full cube would grow with cells x days.
  function summarise(byCategoryDay, byCellStatus) {
    const byCategory = new Map(knownCategories.map((c) => [c, 0]));
    const byStatus = new Map(statuses.map((s) => [s, 0]));
    const byCell = new Map();      // cell -> {open, done}
    const byDay = new Map();       // day -> count
    const byDayCategory = new Map(); // day -> Map(category -> count)
    for (const row of byCategoryDay.rows) {
      add(byCategory, row.category, row.count);
      add(byDay, row.day, row.count);
      if (!byDayCategory.has(row.day)) byDayCategory.set(row.day, new Map());
      add(byDayCategory.get(row.day), row.category, row.count);
    }
    for (const row of byCellStatus.rows) {
      add(byStatus, row.status, row.count);
      const cell = byCell.get(row.grid_cell) || { open: 0, done: 0 };
      if (openStatuses.has(row.status)) cell.open += row.count; else cell.done += row.count;
      byCell.set(row.grid_cell, cell);
    }
    return { total: byCategoryDay.total, byCategory, byStatus, byCell, byDay, byDayCategory };
  }

  // --- the days of the trend: every day from the first to the last, those without cases too ---

  function dayRange(days) {
    const first = root.dataset.since || days[0];
    const last = root.dataset.until || days[days.length - 1];
    if (!first || !last) return days;
    const out = [];
    const d = new Date(first + "T00:00:00Z");
    const end = new Date(last + "T00:00:00Z");
    while (d <= end && out.length < MAX_FILLED_DAYS) {
      out.push(d.toISOString().slice(0, 10));
      d.setUTCDate(d.getUTCDate() + 1);
    }
    // a range longer than that: the days with cases only
    return d <= end ? days : out;
  }

  // --- charts ---

  function chartAt(id) {
    const chart = echarts.init(document.getElementById(id), null, { renderer: "canvas" });
    charts.push(chart);
    return chart;
  }

  function categoriesOf(s) {
    return [...s.byCategory.keys()];
  }

  function drawTrend(s) {
    const days = dayRange([...s.byDay.keys()].sort());
    const cats = categoriesOf(s);
    const many = days.length > 45;
    const chart = chartAt("chart-trend");
    linkChart(chart, (p) => [["category", cats[p.seriesIndex]], ["day", days[p.dataIndex]]]);
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0, data: cats.map((c) => label("category", c)) },
      grid: { left: 40, right: 16, top: 36, bottom: many ? 64 : 28 },
      xAxis: { type: "category", data: days },
      yAxis: { type: "value", minInterval: 1 },
      dataZoom: many ? [{ type: "slider", bottom: 8 }, { type: "inside" }] : [],
      series: cats.map((c) => ({
        type: "bar", stack: "day", name: label("category", c), barMaxWidth: 36,
        itemStyle: { color: CATEGORY_COLOURS[c] },
        data: days.map((d) => (s.byDayCategory.get(d) && s.byDayCategory.get(d).get(c)) || 0),
      })),
    });
  }

  // on a phone (or on paper) the ring leaves the labels beside it too little room and ECharts cuts
  // them to "...": a smaller ring, shorter label lines and labels that wrap
  function ring() {
    const narrow = document.getElementById("chart-category").clientWidth < 520;
    return {
      radius: narrow ? ["26%", "46%"] : ["38%", "68%"],
      labelLine: narrow ? { length: 8, length2: 6 } : { length: 15, length2: 30 },
    };
  }

  function drawCategories(s) {
    const cats = categoriesOf(s);
    const shown = cats.filter((c) => s.byCategory.get(c) > 0);
    categoryChart = chartAt("chart-category");
    linkChart(categoryChart, (p) => [["category", shown[p.dataIndex]]]);
    categoryChart.setOption({
      animation: false,
      tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
      legend: { bottom: 0 },
      series: [{
        type: "pie", center: ["50%", "45%"], ...ring(),
        label: { formatter: "{b}\n{c}", overflow: "break" },
        data: shown.map((c) => ({
          name: label("category", c), value: s.byCategory.get(c), itemStyle: { color: CATEGORY_COLOURS[c] },
        })),
      }],
    });
  }

  function drawStatuses(s) {
    const keys = [...s.byStatus.keys()];
    const chart = chartAt("chart-status");
    linkChart(chart, (p) => [["status", keys[p.dataIndex]]]);
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 8, right: 36, top: 8, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: keys.map((k) => label("status", k)) },
      series: [{
        type: "bar", name: gp.t("dashboard.col.count"), barMaxWidth: 24,
        label: { show: true, position: "right" },
        data: keys.map((k) => ({ value: s.byStatus.get(k), itemStyle: { color: STATUS_COLOURS[k] || "#495057" } })),
      }],
    });
  }

  function drawCells(s) {
    const top = [...s.byCell.entries()]
      .sort((a, b) => (b[1].open + b[1].done) - (a[1].open + a[1].done) || a[0].localeCompare(b[0]))
      .slice(0, TOP_CELLS);
    const names = top.map(([cell]) => cellName(cell));
    const height = Math.max(180, 60 + top.length * 28);
    document.getElementById("chart-cells").style.height = height + "px";
    const chart = chartAt("chart-cells");
    const done = statuses.filter((k) => !openStatuses.has(k));
    const open = statuses.filter((k) => openStatuses.has(k));
    linkChart(chart, (p) => [["grid_cell", top[p.dataIndex][0]], ["status", p.seriesIndex === 0 ? open : done]]);
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0 },
      grid: { left: 8, right: 24, top: 32, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: names, axisLabel: { width: 220, overflow: "truncate" } },
      series: [
        { type: "bar", stack: "cell", name: gp.t("dashboard.series.open"), barMaxWidth: 22,
          itemStyle: { color: "#e8590c" }, data: top.map(([, c]) => c.open) },
        { type: "bar", stack: "cell", name: gp.t("dashboard.series.done"), barMaxWidth: 22,
          itemStyle: { color: "#adb5bd" }, data: top.map(([, c]) => c.done) },
      ],
    });
  }

  // --- the tables of totals (what the charts show, as numbers) ---

  // --- each count links to the case list filtered to exactly the cases it counts ---

  // the list's filters of every count (the page's: first seen on the chosen days, the chosen
  // category, without the cases superseded by a resend, which /api/stats counts nowhere)
  const casesQuery = root.dataset.casesQuery || "";

  // a dimension's value as the list's filters: a day is a first-seen day, statuses may be several
  function listFilters(by, key) {
    if (by === "day") return [["first_seen_since", key], ["first_seen_until", key]];
    if (by === "status") return [].concat(key).map((k) => ["status", k]);
    return [[by, key]];
  }

  // the list of the cases counted where each [by, key] of `dims` holds (none: all the page counts)
  function casesHref(...dims) {
    const query = new URLSearchParams(casesQuery);
    const filters = dims.flatMap(([by, key]) => listFilters(by, key));
    for (const [name] of filters) query.delete(name);
    for (const [name, value] of filters) query.append(name, value);
    return "/cases?" + query.toString();
  }

  function countLink(count, ...dims) {
    return gp.el("a", { href: casesHref(...dims), class: "count-link", text: String(count) });
  }

  function fillTable(id, entries, total) {
    const table = document.getElementById(id);
    const by = table.dataset.by;
    const rows = entries.map(([key, name, count]) => gp.el("tr", { "data-key": key }, [
      gp.el("td", {}, [].concat(name)),
      gp.el("td", { class: "num", "data-count": count }, [countLink(count, [by, key])]),
    ]));
    if (!rows.length) rows.push(gp.el("tr", {}, [gp.el("td", { colspan: 2, class: "muted", text: gp.t("common.none") })]));
    table.tBodies[0].replaceChildren(...rows);
    const foot = table.tFoot || table.createTFoot();
    foot.replaceChildren(gp.el("tr", {}, [
      gp.el("td", { text: gp.t("dashboard.series.total") }),
      gp.el("td", { class: "num", "data-count": total }, [countLink(total)]),
    ]));
  }

  function fillTables(s) {
    fillTable("totals-category", [...s.byCategory].map(([k, n]) => [k, label("category", k), n]), s.total);
    fillTable("totals-status", [...s.byStatus].map(([k, n]) => [k, label("status", k), n]), s.total);
    const named = (cell) => (cellName(cell) === cell || cell === "unassigned"
      ? cellName(cell) : [cellName(cell) + " ", gp.el("span", { class: "muted", text: cell })]);
    const cells = [...s.byCell.entries()].map(([k, c]) => [k, named(k), c.open + c.done]);
    cells.sort((a, b) => b[2] - a[2] || a[0].localeCompare(b[0]));
    fillTable("totals-cell", cells, s.total);
    fillTable("totals-day", [...s.byDay.entries()].sort().reverse().map(([d, n]) => [d, d, n]), s.total);
  }

  function fillFigures(s) {
    const open = [...s.byStatus].filter(([k]) => openStatuses.has(k)).reduce((sum, [, n]) => sum + n, 0);
    const figures = {
      "kpi-total": [s.total],
      "kpi-open": [open, ["status", statuses.filter((k) => openStatuses.has(k))]],
      "kpi-closed": [s.byStatus.get("closed") || 0, ["status", "closed"]],
      "kpi-rejected": [s.byStatus.get("rejected") || 0, ["status", "rejected"]],
    };
    for (const [id, [n, ...dims]] of Object.entries(figures)) {
      const node = document.getElementById(id);
      node.replaceChildren(countLink(n, ...dims));
      node.dataset.count = String(n);
    }
  }

  // a click on a chart's bar or slice opens the same list as its count: dimsOf(params) -> [[by, key]]
  function linkChart(chart, dimsOf) {
    chart.on("click", (params) => {
      const dims = dimsOf(params);
      if (dims) window.location.assign(casesHref(...dims));
    });
  }

  async function start() {
    try {
      const url = root.dataset.statsUrl;
      const join = url.includes("?") ? "&" : "?";
      const [byCategoryDay, byCellStatus] = await Promise.all(
        ["category,day", "grid_cell,status"].map(async (by) => {
          const response = await gp.request(url + join + "by=" + by);
          if (!response.ok) throw new Error(await gp.errorText(response));
          return response.json();
        }),
      );
      const s = summarise(byCategoryDay, byCellStatus);
      fillFigures(s);
      fillTables(s);
      const empty = s.total === 0;
      document.getElementById("dash-empty").hidden = !empty;
      document.querySelector(".charts").hidden = empty;
      if (!empty) {
        drawTrend(s);
        drawCategories(s);
        drawStatuses(s);
        drawCells(s);
      }
      root.dataset.total = String(s.total);
      document.body.dataset.dashReady = "yes";
    } catch (err) {
      gp.flash(gp.t("dashboard.error.load", { detail: err.message }), "error");
      document.body.dataset.dashReady = "error";
    }
  }

  window.addEventListener("resize", () => { for (const chart of charts) chart.resize(); });
  // Printing lays the page out for the paper's width without a resize event: a chart drawn for the
  // screen was cut off at the paper's edge. Before printing the page takes the A4 page's width
  // (html.printing) and the charts are drawn for it; after, for the screen again.
  function printing(on) {
    document.documentElement.classList.toggle("printing", on);
    for (const chart of charts) {
      chart.resize();
      if (chart === categoryChart) chart.setOption({ series: [ring()] });
      // painted now, not at the next frame: that one comes when printing has begun, whose pixel
      // ratio is another, and painted the chart enlarged and cut off
      chart.getZr().refreshImmediately();
    }
  }
  window.addEventListener("beforeprint", () => printing(true));
  window.addEventListener("afterprint", () => printing(false));
  start();
})();
