// The grid map: the cells of GET /api/grids registered as an ECharts map (canvas, no tiles, nothing
// from another host), coloured by open cases; open cases with a position as points (the latest
// CASE_LIMIT, the summary saying so when there are more); recent patrol
// tracks as lines (staff); a click on a cell lists its cases (GET /api/cases?grid_cell=...): its open
// cases first (the OPEN_PANEL_LIMIT seen most recently, a link to the rest), then the CLOSED_PANEL_LIMIT
// closed or rejected ones seen most recently, so that a cell's closed past never hides what is open.
// window.gpMap.selectCell(id) is what a click does, and what the cell table and the tests call.
"use strict";
(function () {
  const root = document.getElementById("grid-map");
  const summary = document.getElementById("map-summary");
  const panelTitle = document.getElementById("cell-title");
  const panelMeta = document.getElementById("cell-meta");
  const panelList = document.getElementById("cell-cases");
  const cellTable = document.getElementById("cell-table");
  const trackList = document.getElementById("track-list");
  const MAP_NAME = "gridpatrol-cells";
  const UNASSIGNED = "unassigned";
  const CASE_LIMIT = 500;   // open cases drawn as points
  const OPEN_PANEL_LIMIT = 200;   // open cases listed for one cell
  const CLOSED_PANEL_LIMIT = 20;  // closed or rejected cases listed after them
  const TRACK_LIMIT = 20;   // recent uploads with a track
  const CATEGORY_COLOURS = { illegal_parking: "#d9480f", street_vending: "#7048e8", piled_debris: "#2b8a3e" };
  const TRACK_COLOURS = ["#0b5cad", "#0c8599", "#5f3dc4", "#c2255c", "#e67700", "#2f9e44"];
  const openStatuses = (root.dataset.openStatuses || "").split(",").filter(Boolean);
  const closedStatuses = (root.dataset.closedStatuses || "").split(",").filter(Boolean);
  const withTracks = root.dataset.tracks === "yes";

  const cells = new Map();  // id -> {id, name, team, street, community, open, centre: [lon, lat]}
  let unassignedOpen = 0;
  let removed = { open: 0, cells: [] };  // open cases in cells a later grid import removed
  let pointsOf = { read: 0, total: 0 };  // the open cases read for points, of how many (CASE_LIMIT)
  let chart = null;
  let selected = null;
  let panelRequest = 0;

  function escapeHtml(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  // a time as the other pages show it: at the site's UTC offset (not the browser's), YYYY-MM-DD HH:MM
  const offsetMinutes = Number(root.dataset.offsetMinutes || 0);
  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (isNaN(date)) return iso;
    return new Date(date.getTime() + offsetMinutes * 60000).toISOString().slice(0, 16).replace("T", " ");
  }

  async function getJson(url) {
    const response = await gp.request(url);
    if (!response.ok) throw new Error(await gp.errorText(response));
    return response.json();
  }

  // --- geometry ---

  function rings(geometry) {
    if (geometry.type === "Polygon") return [geometry.coordinates[0]];
    if (geometry.type === "MultiPolygon") return geometry.coordinates.map((polygon) => polygon[0]);
    return [];
  }

  function centreOf(geometry) {
    // the centre of the outer rings' bounding box: inside the rectangular and near-convex cells of a grid
    let minLon = Infinity, minLat = Infinity, maxLon = -Infinity, maxLat = -Infinity;
    for (const ring of rings(geometry)) {
      for (const [lon, lat] of ring) {
        minLon = Math.min(minLon, lon); maxLon = Math.max(maxLon, lon);
        minLat = Math.min(minLat, lat); maxLat = Math.max(maxLat, lat);
      }
    }
    return [(minLon + maxLon) / 2, (minLat + maxLat) / 2];
  }

  // --- data ---

  async function loadGrid() {
    const grid = await getJson("/api/grids");
    const features = [];
    for (const feature of grid.features) {
      const p = feature.properties;
      cells.set(p.id, {
        id: p.id, name: p.name, team: p.team, street: p.street, community: p.community,
        open: p.open_cases, centre: centreOf(feature.geometry),
      });
      // ECharts names a map's regions by properties.name: the cell id, unique and stable
      features.push({ type: "Feature", id: p.id, geometry: feature.geometry, properties: { name: p.id } });
    }
    unassignedOpen = grid.unassigned.open_cases;
    removed = { open: grid.removed.open_cases, cells: grid.removed.cells };
    echarts.registerMap(MAP_NAME, { type: "FeatureCollection", features });
  }

  async function loadCasePoints() {
    const params = new URLSearchParams({ per_page: String(CASE_LIMIT), sort: "last_seen", order: "desc" });
    for (const status of openStatuses) params.append("status", status);
    const page = await getJson("/api/cases?" + params.toString());
    pointsOf = { read: page.items.length, total: page.total };
    return page.items.filter((c) => c.position).map((c) => ({
      name: c.number || "#" + c.id,
      value: [c.position.lon, c.position.lat],
      caseId: c.id, category: c.category, status: c.status, cell: c.grid_cell,
    }));
  }

  async function loadTracks() {
    if (!withTracks) return [];
    const listing = await getJson("/api/uploads?has_track=true&limit=" + TRACK_LIMIT);
    const ready = listing.items.filter((u) => u.track_ready);
    const shapes = await Promise.all(ready.map((u) => getJson("/api/uploads/" + u.id + "/track")));
    const tracks = shapes.map((shape, i) => ({
      upload: ready[i], points: shape.points, colour: TRACK_COLOURS[i % TRACK_COLOURS.length],
    }));
    showTrackList(listing.items, tracks);
    return tracks.filter((track) => track.points.length >= 2);
  }

  // --- drawing ---

  function tooltip(params) {
    if (params.seriesType === "scatter") {
      const d = params.data;
      return "<b>" + escapeHtml(d.name) + "</b><br>" + escapeHtml(gp.t("category." + d.category)) +
        " · " + escapeHtml(gp.t("status." + d.status));
    }
    if (params.seriesType === "lines") {
      const d = params.data;
      return "<b>" + escapeHtml(gp.t("map.series.tracks")) + "</b><br>" +
        escapeHtml(d.camera || gp.t("common.unknown")) + " · " + escapeHtml(when(d.uploaded));
    }
    const cell = cells.get(params.name);
    if (!cell) return "";
    return "<b>" + escapeHtml(cell.name) + "</b><br>" + escapeHtml(cell.id) + " · " + escapeHtml(cell.team) +
      "<br>" + escapeHtml(gp.t("map.col.open")) + ": " + cell.open;
  }

  function draw(points, tracks) {
    const all = [...cells.values()];
    const most = Math.max(1, ...all.map((c) => c.open));
    const lats = all.map((c) => c.centre[1]);
    const midLat = lats.length ? (Math.min(...lats) + Math.max(...lats)) / 2 : 0;
    // the open cases as points, a series per category (in the order first met), named and coloured
    // as the legend shows them
    const categories = [...new Set(points.map((p) => p.category))];
    const pointSeries = categories.map((category) => ({
      type: "scatter", coordinateSystem: "geo", geoIndex: 0, name: gp.t("category." + category), z: 5,
      symbolSize: 11, data: points.filter((p) => p.category === category),
      itemStyle: { color: CATEGORY_COLOURS[category] || "#495057", borderColor: "#fff", borderWidth: 1.5 },
    }));
    chart = echarts.init(root, null, { renderer: "canvas" });
    chart.setOption({
      animation: false,
      tooltip: { trigger: "item", formatter: tooltip, confine: true },
      legend: {
        top: 4, left: "center",
        data: [
          // the points' colours say their category: one entry each (a click hides or shows them)
          ...pointSeries.map((series) => ({ name: series.name, icon: "circle", itemStyle: series.itemStyle })),
          ...(tracks.length ? [{ name: gp.t("map.series.tracks"), itemStyle: { color: TRACK_COLOURS[0] } }] : []),
        ],
      },
      visualMap: {
        type: "continuous", seriesIndex: 0, min: 0, max: most, calculable: true, precision: 0,
        itemWidth: 14, ...responsive().visualMap,
        text: [gp.t("map.legend.more"), gp.t("map.legend.fewer")],
        inRange: { color: ["#eef3f8", "#ffe3a3", "#f59f00", "#e8590c", "#b3261e"] },
      },
      geo: {
        map: MAP_NAME,
        roam: true,
        // a degree of longitude is cos(latitude) of a degree of latitude: cells keep their shape
        aspectScale: Math.cos((midLat * Math.PI) / 180),
        ...responsive().geo,
        selectedMode: false,  // the picked cell is outlined through `regions` (selectCell)
        label: {
          show: true, color: "#1d2733", fontSize: 12, fontWeight: 600,
          textBorderColor: "#fff", textBorderWidth: 2,
          formatter: (p) => { const c = cells.get(p.name); return c && c.open ? String(c.open) : ""; },
        },
        itemStyle: { areaColor: "#eef3f8", borderColor: "#8796a8", borderWidth: 1 },
        emphasis: { itemStyle: { areaColor: "#cfe3f7" }, label: { show: true } },
      },
      series: [
        {
          type: "map", geoIndex: 0, name: gp.t("map.series.cells"),
          data: all.map((c) => ({ name: c.id, value: c.open })),
        },
        ...pointSeries,
        {
          type: "lines", coordinateSystem: "geo", geoIndex: 0, name: gp.t("map.series.tracks"), z: 4,
          polyline: true, silent: false,
          data: tracks.map((track) => ({
            coords: track.points, camera: track.upload.camera_id, uploaded: track.upload.created_at,
            lineStyle: { color: track.colour },
          })),
          lineStyle: { width: 2.5, opacity: 0.85 },
        },
      ],
    });
    chart.on("click", (params) => {
      if (params.seriesType === "scatter") selectCell(params.data.cell);
      else if (params.componentType === "geo" || params.seriesType === "map") selectCell(params.name);
    });
    window.addEventListener("resize", () => {
      chart.resize();
      chart.setOption(responsive());
    });
  }

  function responsive() {
    // the grid's extent fits a square of part of the chart's shorter side, below the legend; the
    // colour scale stands at the left beside a wide map, and lies under a narrow one
    if (root.clientWidth < 600) {
      return {
        geo: { layoutCenter: ["50%", "48%"], layoutSize: "78%" },
        visualMap: { orient: "horizontal", left: "center", bottom: 4, itemHeight: 160 },
      };
    }
    return {
      geo: { layoutCenter: ["50%", "53%"], layoutSize: "86%" },
      visualMap: { orient: "vertical", left: 4, bottom: 8, itemHeight: 110 },
    };
  }

  // --- the summary, the table of cells, the track list ---

  function showSummary() {
    const all = [...cells.values()];
    const open = all.reduce((sum, c) => sum + c.open, 0) + unassignedOpen + removed.open;
    const busy = all.filter((c) => c.open > 0).length;
    let text = gp.t("map.summary", {
      cells: gp.t("map.count.cells", { count: all.length }), busy, open: gp.t("map.count.open", { count: open }),
    });
    if (unassignedOpen) text += " " + gp.t("map.summary.unassigned", { count: unassignedOpen });
    if (removed.open) text += " " + gp.t("map.summary.removed", { count: removed.open });
    if (pointsOf.total > pointsOf.read) {
      // more open cases than the map draws as points: say so, or the missing ones seem not to exist
      text += " " + gp.t("map.summary.points_limited", { shown: pointsOf.read, total: pointsOf.total });
      summary.dataset.pointsLimited = String(pointsOf.read);
    }
    summary.textContent = text;
    summary.dataset.openTotal = String(open);
    summary.dataset.cells = String(all.length);
  }

  function cellButton(id, label) {
    const button = gp.el("button", { type: "button", class: "link", "data-cell": id, text: label });
    button.addEventListener("click", () => selectCell(id));
    return button;
  }

  function showCellTable() {
    const body = cellTable.tBodies[0];
    const busy = [...cells.values()].filter((c) => c.open > 0).sort((a, b) => b.open - a.open || a.id.localeCompare(b.id));
    const rows = busy.map((c) => gp.el("tr", { "data-cell": c.id, "data-open": c.open }, [
      gp.el("td", {}, [cellButton(c.id, c.id)]),
      gp.el("td", { text: c.name }),
      gp.el("td", { text: c.team }),
      gp.el("td", { class: "num", text: String(c.open) }),
    ]));
    if (unassignedOpen) {
      rows.push(gp.el("tr", { "data-cell": UNASSIGNED, "data-open": unassignedOpen }, [
        gp.el("td", {}, [cellButton(UNASSIGNED, gp.t("map.unassigned"))]),
        gp.el("td", { class: "muted", text: gp.t("map.unassigned.body") }),
        gp.el("td", { text: "" }),
        gp.el("td", { class: "num", text: String(unassignedOpen) }),
      ]));
    }
    if (removed.open) {
      // no polygon to click: the cells' ids, whose cases the case list finds by cell
      rows.push(gp.el("tr", { "data-cell": "removed", "data-open": removed.open }, [
        gp.el("td", { text: gp.t("map.removed") }),
        gp.el("td", { class: "muted", text: removed.cells.join(", ") }),
        gp.el("td", { text: "" }),
        gp.el("td", { class: "num", text: String(removed.open) }),
      ]));
    }
    if (!rows.length) rows.push(gp.el("tr", {}, [gp.el("td", { colspan: 4, class: "muted", text: gp.t("map.cells.none") })]));
    body.replaceChildren(...rows);
    const total = busy.reduce((sum, c) => sum + c.open, 0) + unassignedOpen + removed.open;
    const foot = cellTable.tFoot || cellTable.createTFoot();
    foot.replaceChildren(gp.el("tr", {}, [
      gp.el("td", { colspan: 3, text: gp.t("map.col.total") }),
      gp.el("td", { class: "num", id: "open-total", text: String(total) }),
    ]));
  }

  function showTrackList(uploads, tracks) {
    if (!trackList) return;
    const colours = new Map(tracks.map((track) => [track.upload.id, track.colour]));
    const items = uploads.map((u) => {
      let label = (u.camera_id || gp.t("common.unknown")) + " · " + when(u.start_time || u.created_at);
      if (u.track_filename) label += " · '" + u.track_filename + "'";  // the track as sent, as its job names it
      const shape = tracks.find((track) => track.upload.id === u.id);
      let detail = gp.t("map.tracks.points", { count: shape ? shape.points.length : 0 });
      if (!u.track_ready) detail = gp.t(u.job_status === "failed" ? "map.tracks.failed" : "map.tracks.pending");
      const swatch = gp.el("span", { class: "track-swatch", "aria-hidden": "true" });
      swatch.style.background = colours.get(u.id) || "transparent";
      return gp.el("li", { "data-upload": u.id }, [swatch, label + " · " + detail]);
    });
    if (!items.length) items.push(gp.el("li", { class: "muted", text: gp.t("map.tracks.none") }));
    trackList.replaceChildren(...items);
  }

  // --- the panel of one cell ---

  function markSelected(id) {
    for (const row of cellTable.tBodies[0].rows) row.classList.toggle("selected", row.dataset.cell === id);
    if (!chart) return;
    const outline = { borderColor: "#0b5cad", borderWidth: 4 };
    chart.setOption({ geo: { regions: cells.has(id) ? [{ name: id, itemStyle: outline }] : [] } });
  }

  function caseItem(c) {
    const link = gp.el("a", { href: "/cases/" + c.id, text: c.number || "#" + c.id });
    const line = gp.el("div", { class: "case-line" }, [
      link,
      gp.el("span", { class: "badge " + c.status, text: gp.t("status." + c.status) }),
      gp.el("span", { text: gp.t("category." + c.category) }),
    ]);
    const seen = gp.el("div", { class: "when", text: gp.t("map.panel.seen", { when: when(c.last_seen) }) });
    return gp.el("li", { "data-case-id": c.id }, [line, seen]);
  }

  function cellCases(id, statuses, limit) {
    // the cell's cases in some statuses, seen most recently first: one bounded page
    const params = new URLSearchParams({ grid_cell: id, per_page: String(limit), sort: "last_seen", order: "desc" });
    for (const status of statuses) params.append("status", status);
    return getJson("/api/cases?" + params.toString());
  }

  function panelItems(id, open, closed) {
    if (!open.total && !closed.total) return [gp.el("li", { class: "muted", text: gp.t("map.panel.none") })];
    const heading = gp.t("map.panel.open", { count: open.total });
    const items = [gp.el("li", { class: "cell-group", "data-group": "open", text: heading })];
    items.push(...open.items.map(caseItem));
    if (open.total > open.items.length) {
      const all = new URLSearchParams({ grid_cell: id });
      for (const status of openStatuses) all.append("status", status);
      items.push(gp.el("li", { class: "muted", "data-more": "open" }, [
        gp.t("map.panel.open_more", { shown: open.items.length, total: open.total }) + " ",
        gp.el("a", { href: "/cases?" + all.toString(), text: gp.t("map.panel.open_all") }),
      ]));
    }
    if (closed.items.length) {
      items.push(gp.el("li", { class: "cell-group", "data-group": "closed", text: gp.t("map.panel.closed") }));
      items.push(...closed.items.map(caseItem));
    }
    if (closed.total > closed.items.length) {
      const text = gp.t("map.panel.closed_more", { shown: closed.items.length, total: closed.total });
      items.push(gp.el("li", { class: "muted", "data-more": "closed", text }));
    }
    return items;
  }

  async function selectCell(id) {
    if (!id) return;
    const cell = cells.get(id);
    markSelected(id);
    selected = id;
    panelTitle.textContent = cell ? cell.name : gp.t("map.unassigned");
    panelMeta.textContent = cell
      ? gp.t("map.panel.meta", { id: cell.id, team: cell.team, open: cell.open })
      : gp.t("map.panel.meta.unassigned", { open: unassignedOpen });
    panelList.replaceChildren(gp.el("li", { class: "muted", text: gp.t("common.loading") }));
    document.getElementById("cell-panel").dataset.cell = id;
    delete panelList.dataset.total;  // set again when this cell's cases are listed
    delete panelList.dataset.openTotal;
    const ticket = ++panelRequest;
    try {
      const [open, closed] = await Promise.all([
        cellCases(id, openStatuses, OPEN_PANEL_LIMIT), cellCases(id, closedStatuses, CLOSED_PANEL_LIMIT),
      ]);
      if (ticket !== panelRequest) return;  // another cell was picked meanwhile
      panelList.replaceChildren(...panelItems(id, open, closed));
      panelList.dataset.openTotal = String(open.total);
      panelList.dataset.total = String(open.total + closed.total);
    } catch (err) {
      if (ticket !== panelRequest) return;
      panelList.replaceChildren();
      gp.flash(gp.t("error.request", { detail: err.message }), "error");
    }
  }

  function cellPixel(id) {
    // where a cell's centre is drawn, in pixels from the map's top left (for a click in the tests)
    const cell = cells.get(id);
    if (!chart || !cell) return null;
    const [x, y] = chart.convertToPixel({ geoIndex: 0 }, cell.centre);
    return { x, y };
  }

  async function start() {
    try {
      await loadGrid();
      const [points, tracks] = await Promise.all([loadCasePoints(), loadTracks()]);
      draw(points, tracks);
      showSummary();
      showCellTable();
      root.dataset.points = String(points.length);
      root.dataset.trackCount = String(tracks.length);
      document.body.dataset.mapReady = "yes";
    } catch (err) {
      summary.textContent = "";
      gp.flash(gp.t("map.error.load", { detail: err.message }), "error");
      document.body.dataset.mapReady = "error";
    }
  }

  window.gpMap = { selectCell, cellPixel, chart: () => chart };
  start();
})();
