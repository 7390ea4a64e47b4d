// gblsr-view page: one OpenSeadragon viewer per method, kept in sync, over a custom tile source
// whose levels are exact output sizes of the continuous image (see gblsr/viewer/tiles.py).
(function () {
  "use strict";
  const OSD = window.OpenSeadragon;
  const $ = (id) => document.getElementById(id);

  // Page state, read by the browser test and handy in the console.
  const state = {
    ready: false,
    error: null,
    info: null,
    viewers: [],
    lead: 0,
    requested: {}, // "view:level" -> tiles requested
    loaded: {}, // "view:level" -> tiles loaded
    drawn: {}, // "view:level" -> tile draws
    inflight: 0,
    dropped: 0, // requests aborted because their tile left the view
    failed: 0,
  };
  window.gblsrViewer = state;

  function bump(map, view, level) {
    const k = view + ":" + level;
    map[k] = (map[k] || 0) + 1;
  }

  // Tile placement is exact per axis: tile (x, y) of level L covers rows [y T, y T + h) of an
  // L.height x L.width rendering, i.e. [y T / L.height, ...) of the image's height.
  function makeTileSource(info, view) {
    const levels = info.levels;
    const top = levels[levels.length - 1];
    const T = info.tile_size;
    const aspect = top.height / top.width; // OpenSeadragon's normalized height
    const inflight = new Set();
    view.inflight = inflight;
    return {
      width: top.width,
      height: top.height,
      tileSize: T,
      tileOverlap: 0,
      minLevel: 0,
      maxLevel: levels.length - 1,
      getLevelScale: function (level) {
        const L = levels[level];
        return L ? L.width / top.width : Math.pow(2, level - (levels.length - 1));
      },
      getNumTiles: function (level) {
        const L = levels[level];
        return L ? new OSD.Point(L.cols, L.rows) : new OSD.Point(0, 0);
      },
      getTileBounds: function (level, x, y, isSource) {
        const L = levels[level];
        const px = x * T;
        const py = y * T;
        const sx = Math.min(T, L.width - px);
        const sy = Math.min(T, L.height - py);
        if (isSource) {
          return new OSD.Rect(0, 0, sx, sy);
        }
        return new OSD.Rect(px / L.width, (py / L.height) * aspect, sx / L.width,
          (sy / L.height) * aspect);
      },
      getTileAtPoint: function (level, point) {
        const L = levels[level];
        const x = Math.floor((point.x * L.width) / T);
        const y = Math.floor(((point.y / aspect) * L.height) / T);
        return new OSD.Point(Math.max(0, Math.min(L.cols - 1, x)),
          Math.max(0, Math.min(L.rows - 1, y)));
      },
      getTileUrl: function (level, x, y) {
        return "tile/" + info.session + "/" + view.id + "/" + level + "/" + x + "_" + y + ".png";
      },
      // fetch() with an AbortController, so that tiles the user has moved away from can be
      // dropped: the server sees the connection close and withdraws the render.
      downloadTileStart: function (context) {
        const entry = { context: context, tile: context.tile, ctrl: new AbortController(),
          settled: false, stale: false };
        context.userData.gblsr = entry;
        if (entry.tile && staleTest()(entry.tile)) {
          // queued before the user moved on: never sent
          entry.settled = true;
          state.dropped += 1;
          context.fail("gblsr: stale tile dropped", null);
          return;
        }
        inflight.add(entry);
        state.inflight += 1;
        bump(state.requested, view.id, context.tile ? context.tile.level : -1);
        const settle = () => {
          if (entry.settled) return false;
          entry.settled = true;
          inflight.delete(entry);
          state.inflight -= 1;
          updateStatus();
          return true;
        };
        fetch(context.src, { signal: entry.ctrl.signal, credentials: "same-origin" })
          .then((r) => {
            if (!r.ok) throw new Error("HTTP " + r.status);
            return r.blob();
          })
          .then((blob) => {
            if (settle()) context.finish(blob, null, "rasterBlob");
          })
          .catch((err) => {
            if (!settle()) return;
            if (entry.stale) {
              state.dropped += 1;
              context.fail("gblsr: stale tile dropped", null);
            } else {
              state.failed += 1;
              context.fail("gblsr: " + err.message, null);
            }
          });
        updateStatus();
      },
      downloadTileAbort: function (context) {
        // OpenSeadragon's own timeout: it fails the job itself.
        const entry = context.userData.gblsr;
        if (entry && !entry.settled) {
          entry.settled = true;
          inflight.delete(entry);
          state.inflight -= 1;
          entry.ctrl.abort();
        }
      },
    };
  }

  function magnification(viewer) {
    const info = state.info;
    const top = info.levels[info.levels.length - 1];
    const zoom = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
    return (zoom * top.width) / info.input.width;
  }

  // The level a magnification is drawn from: the first whose pixels are at least as fine as
  // the screen's device pixels.
  function neededLevel(mag) {
    const levels = state.info.levels;
    const want = mag * (window.devicePixelRatio || 1);
    for (const L of levels) {
      if (L.scale >= want * 0.999) return L;
    }
    return levels[levels.length - 1];
  }

  // A tile is stale when it lies outside where the lead view is going (with a margin), or is
  // finer than that zoom needs.
  function staleTest() {
    const lead = state.viewers[state.lead];
    if (!lead || !lead.world.getItemCount()) return () => false;
    const bounds = lead.viewport.getBounds(false);
    const margin = 0.25 * Math.max(bounds.width, bounds.height);
    const area = new OSD.Rect(bounds.x - margin, bounds.y - margin, bounds.width + 2 * margin,
      bounds.height + 2 * margin);
    const zoom = lead.viewport.viewportToImageZoom(lead.viewport.getZoom(false));
    const info = state.info;
    const mag = (zoom * info.levels[info.levels.length - 1].width) / info.input.width;
    const maxLevel = neededLevel(mag).index + 1;
    return (t) => t.level > maxLevel || !area.intersection(t.bounds);
  }

  // Abort the requests in flight for stale tiles.
  function dropStale() {
    const stale = staleTest();
    for (const view of state.info.views) {
      for (const entry of Array.from(view.inflight)) {
        if (entry.tile && !entry.settled && stale(entry.tile)) {
          entry.stale = true;
          entry.ctrl.abort();
        }
      }
    }
  }

  function updateStatus() {
    const info = state.info;
    if (!info || !state.viewers.length) return;
    const mag = magnification(state.viewers[state.lead]);
    const text = "\u00d7" + mag.toFixed(1);
    $("mag").textContent = text;
    for (const el of document.querySelectorAll(".vmag")) el.textContent = text;
    const L = neededLevel(mag);
    $("level").textContent = "level " + L.index + "/" + (info.levels.length - 1) + ": " +
      L.width + "\u00d7" + L.height + " (\u00d7" + +L.scale.toFixed(3) + ")";
    const status = $("status");
    const beyond = mag * (window.devicePixelRatio || 1) > info.max_scale * 1.001;
    if (state.inflight > 0) {
      status.textContent = "rendering " + state.inflight + " tile" +
        (state.inflight > 1 ? "s" : "") + "\u2026 (a coarser level is shown meanwhile)";
      status.className = "warn";
    } else if (beyond) {
      status.textContent = "beyond \u00d7" + info.max_scale + ": pixels enlarged by the browser";
      status.className = "warn";
    } else {
      status.textContent = "";
      status.className = "";
    }
  }

  let syncing = false;
  function syncFrom(index) {
    if (syncing || index !== state.lead) return;
    syncing = true;
    const lead = state.viewers[index];
    const zoom = lead.viewport.getZoom(true);
    const center = lead.viewport.getCenter(true);
    state.viewers.forEach((v, i) => {
      if (i !== index) {
        v.viewport.zoomTo(zoom, null, true);
        v.viewport.panTo(center, true);
      }
    });
    syncing = false;
    dropStale();
    updateStatus();
  }

  function build(info) {
    state.info = info;
    document.title = info.title + " \u2014 gblsr-view";
    $("title").textContent = info.title;
    const main = $("views");
    // All panels first, then the viewers: a viewer made while its panel is still the only one
    // (full width) would keep that zoom when the panel shrinks.
    const boxes = info.views.map((view, i) => {
      const box = document.createElement("div");
      box.className = "view";
      const label = document.createElement("div");
      label.className = "label";
      label.textContent = view.name;
      const vmag = document.createElement("span");
      vmag.className = "vmag";
      label.appendChild(vmag);
      const osd = document.createElement("div");
      osd.className = "osd";
      osd.id = "osd-" + i;
      box.appendChild(osd);
      box.appendChild(label);
      main.appendChild(box);
      const makeLead = () => {
        state.lead = i;
      };
      for (const ev of ["pointerdown", "pointerenter", "wheel", "focusin"]) {
        box.addEventListener(ev, makeLead, { capture: true, passive: true });
      }
      return osd;
    });
    info.views.forEach((view, i) => {
      const viewer = OSD({
        element: boxes[i],
        tileSources: makeTileSource(info, view),
        drawer: "canvas",
        showNavigationControl: false,
        maxZoomPixelRatio: 1,
        visibilityRatio: 0.5,
        imageLoaderLimit: 6,
        timeout: 120000,
        animationTime: 0.6,
        blendTime: 0.1,
      });
      viewer.addHandler("viewport-change", () => syncFrom(i));
      viewer.addHandler("animation-finish", updateStatus);
      viewer.addHandler("tile-loaded", (e) => bump(state.loaded, i, e.tile.level));
      viewer.addHandler("tile-drawn", (e) => bump(state.drawn, i, e.tile.level));
      viewer.addHandler("tile-load-failed", (e) => {
        // A dropped tile may be wanted again later: let OpenSeadragon request it again.
        if (String(e.message).startsWith("gblsr: stale")) {
          setTimeout(() => {
            e.tile.exists = true;
          }, 0);
        }
      });
      viewer.addHandler("open", () => {
        if (state.viewers.every((v) => v.world.getItemCount() > 0)) {
          state.ready = true;
          updateStatus();
        }
      });
      state.viewers.push(viewer);
    });
    const lead = () => state.viewers[state.lead];
    $("zoom-in").onclick = () => lead().viewport.zoomBy(2);
    $("zoom-out").onclick = () => lead().viewport.zoomBy(0.5);
    $("home").onclick = () => lead().viewport.goHome();
  }

  // For tests and scripting: zoom the lead view by a factor about a point (viewport
  // coordinates, default the centre); the others follow.
  state.zoomBy = function (factor, x, y) {
    const v = state.viewers[state.lead];
    const p = x === undefined ? null : new OSD.Point(x, y);
    v.viewport.zoomBy(factor, p, true);
    v.viewport.applyConstraints(true);
    v.forceRedraw();
  };
  state.view = function () {
    return {
      magnification: state.viewers.length ? magnification(state.viewers[state.lead]) : 0,
      views: state.viewers.map((v) => {
        const c = v.viewport.getCenter(true);
        return { zoom: v.viewport.getZoom(true), center: [c.x, c.y] };
      }),
    };
  };
  state.idle = function () {
    return state.ready && state.inflight === 0 &&
      state.viewers.every((v) => v.world.getItemAt(0).getFullyLoaded());
  };

  fetch("info.json")
    .then((r) => {
      if (!r.ok) throw new Error("info.json: HTTP " + r.status);
      return r.json();
    })
    .then(build)
    .catch((err) => {
      state.error = String(err);
      $("status").textContent = "cannot start: " + err;
      $("status").className = "warn";
    });
})();
