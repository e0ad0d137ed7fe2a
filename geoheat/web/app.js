// geoheat's page: the heat over an OpenStreetMap basemap, with filters kept in the URL hash.
// The settings come from the page itself (geoheat-meta), written by `geoheat serve` or
// `geoheat build --site`. Hash: #map=ZOOM/LAT/LON&type=Run,Ride&years=2019-2023&cmap=hot&scaling=cdf&normalize=global
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("geoheat-meta").textContent);
  var view = meta.view || {};
  var state = {
    types: view.types ? view.types.slice() : [],
    years: view.years ? view.years.slice() : null,
    cmap: view.cmap || null,
    scaling: view.scaling || null,
    normalize: view.normalize || "global",
    map: null
  };

  function readHash() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var at = (params.get("map") || "").split("/").map(Number);
    if (at.length === 3 && at.every(isFinite)) { state.map = at; }
    if (!meta.dynamic) { return; }
    if (params.has("type")) {
      state.types = params.get("type").split(",").filter(function (t) {
        return meta.types.indexOf(t) >= 0;
      });
    }
    var years = (params.get("years") || "").match(/^(\d{4})-(\d{4})$/);
    if (years) { state.years = [Number(years[1]), Number(years[2])]; }
    if (params.get("years") === "all") { state.years = null; }
    if (meta.cmaps.indexOf(params.get("cmap")) >= 0) { state.cmap = params.get("cmap"); }
    if (meta.scalings.indexOf(params.get("scaling")) >= 0) { state.scaling = params.get("scaling"); }
    if ((meta.normalizes || []).indexOf(params.get("normalize")) >= 0) { state.normalize = params.get("normalize"); }
  }

  function writeHash() {
    var c = map.getCenter(), z = map.getZoom();
    var digits = Math.max(0, Math.ceil(Math.log(Math.pow(2, z)) / Math.LN10) + 1);
    var parts = ["map=" + z + "/" + c.lat.toFixed(digits) + "/" + c.lng.toFixed(digits)];
    if (meta.dynamic) {
      parts.push("type=" + (state.types.length ? state.types.join(",") : "all"));
      parts.push("years=" + (state.years ? state.years.join("-") : "all"));
      parts.push("cmap=" + state.cmap, "scaling=" + state.scaling, "normalize=" + state.normalize);
    }
    history.replaceState(null, "", "#" + parts.join("&"));
  }

  function tileUrl() {
    var url = meta.tiles;
    if (!meta.dynamic) { return url; }
    var query = ["c=" + encodeURIComponent(state.cmap), "s=" + encodeURIComponent(state.scaling),
                 "n=" + encodeURIComponent(state.normalize),
                 "t=" + encodeURIComponent(state.types.join(",")),
                 "y=" + (state.years ? state.years.join("-") : "")];
    return url + "?" + query.join("&");
  }

  // The legend: the passes the colours stand for at this zoom, each at the heat its lines
  // are drawn with (the build's key and QGIS style give the same), on the colormap's bar.
  function legendTicks(z, done) {
    if (meta.legend) {  // a site or a tile file: the build's legend, level by level
      var zooms = Object.keys(meta.legend).map(Number);
      if (!zooms.length) { return done([]); }
      var near = zooms.reduce(function (a, b) { return Math.abs(b - z) < Math.abs(a - z) ? b : a; });
      return done(meta.legend[String(near)] || []);
    }
    if (!meta.dynamic) { return done(null); }
    fetch("legend/" + z + ".json?" + tileUrl().split("?")[1])
      .then(function (r) { return r.ok ? r.json() : { ticks: [] }; })
      .then(function (j) { done(j.ticks); }, function () { done([]); });
  }

  function drawLegend() {
    if (!legendBox) { return; }
    var z = map.getZoom();
    legendTicks(z, function (ticks) {
      if (ticks === null || !meta.ramps) { legendBox.style.display = "none"; return; }
      legendBox.style.display = "";
      var ramp = meta.ramps[state.cmap] || meta.ramps[Object.keys(meta.ramps)[0]];
      var unit = meta.unit || "passes";
      var local = meta.dynamic ? state.normalize === "local" : meta.local;
      var html = '<div class="geoheat-legend-title">' + (local ? unit + ", ranked nearby" : unit) + "</div>" +
        '<div class="geoheat-legend-bar" style="background: linear-gradient(to right, ' + ramp.join(", ") + ')"></div>' +
        '<div class="geoheat-legend-ticks">';
      var shown = local ? [[0.25, "fewer"], [1, "more"]] :
        ticks.map(function (t) { return [t[0], Number(t[1]).toLocaleString("en")]; });
      var lastRight = -1, marks = [];
      shown.forEach(function (t, i) {  // left out where it would overlap (the last stays)
        var at = Math.max(0, Math.min(1, t[0])) * 100;
        marks.push({ at: at, text: t[1], last: i === shown.length - 1 });
      });
      marks.filter(function (m, i) {
        var width = 3.4 * String(m.text).length + 3;  // in % of the 220 px bar: 12 px digits and a gap
        var last = marks[marks.length - 1];
        if (!m.last && Math.abs(last.at - m.at) < width) { return false; }
        if (m.at - width / 2 < lastRight && !m.last) { return false; }
        lastRight = m.at + width / 2;
        return true;
      }).forEach(function (m) {
        html += '<span style="left: ' + m.at.toFixed(1) + '%">' + m.text + "</span>";
      });
      legendBox.innerHTML = html + "</div>";
    });
  }

  // A light colormap is drawn over the light map; the others over the dark one.
  function applyStyle() {
    document.getElementById("map").classList.toggle("geoheat-light", state.cmap === "light");
  }

  readHash();
  var map = L.map("map", { maxZoom: 19, zoomSnap: 1 });
  var legendBox = null;
  L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png", {
    maxZoom: 19,
    className: "geoheat-basemap",
    attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
  }).addTo(map);
  var heatOptions = { maxZoom: 19, maxNativeZoom: meta.maxzoom, attribution: "heat: geoheat" };
  var b = meta.bounds;
  if (b && !meta.dynamic) {  // a filter may move the heat beyond the first view's extent
    var pad = 0.02 * Math.max(b[2] - b[0], b[3] - b[1]);
    heatOptions.bounds = L.latLngBounds([b[1] - pad, b[0] - pad], [b[3] + pad, b[2] + pad]);
  }
  // A static site lists its tiles (tiles/index.json): the others are not asked for (a
  // transparent image instead of a 404 in the console for every empty tile in view).
  var have = null;
  var HeatLayer = L.TileLayer.extend({
    getTileUrl: function (coords) {
      if (have && !have[this._getZoomForUrl() + "/" + coords.x + "/" + coords.y]) {
        return "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";
      }
      return L.TileLayer.prototype.getTileUrl.call(this, coords);
    }
  });
  var heat = new HeatLayer(tileUrl(), heatOptions);
  if (meta.index) {
    fetch(meta.index).then(function (r) { return r.json(); }).then(function (index) {
      have = {};
      Object.keys(index).forEach(function (z) {
        Object.keys(index[z]).forEach(function (x) {
          index[z][x].forEach(function (y) { have[z + "/" + x + "/" + y] = true; });
        });
      });
    }, function () { have = null; }).then(function () { heat.addTo(map); });
  } else {
    heat.addTo(map);
  }
  if (state.map) {
    map.setView([state.map[1], state.map[2]], state.map[0]);
  } else if (b) {
    map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
  } else {
    map.setView([0, 0], 2);
  }

  function select(label, options, value, onchange) {
    var wrap = L.DomUtil.create("label");
    wrap.appendChild(document.createTextNode(label));
    var box = L.DomUtil.create("select", "", wrap);
    options.forEach(function (o) {
      var opt = document.createElement("option");
      opt.value = String(o[0]); opt.textContent = o[1];
      if (String(o[0]) === String(value)) { opt.selected = true; }
      box.appendChild(opt);
    });
    box.addEventListener("change", function () { onchange(box.value); update(); });
    return wrap;
  }

  function update() {
    heat.setUrl(tileUrl());
    writeHash();
    applyStyle();
    drawLegend();
  }

  if (meta.dynamic) {
    var Controls = L.Control.extend({
      options: { position: "topright" },
      onAdd: function () {
        var div = L.DomUtil.create("div", "geoheat-controls");
        div.id = "geoheat-controls";
        L.DomEvent.disableClickPropagation(div);
        L.DomEvent.disableScrollPropagation(div);
        var title = L.DomUtil.create("div", "geoheat-title", div);
        title.textContent = "geoheat";
        var types = [["", "all"]].concat(meta.types.map(function (t) { return [t, t]; }));
        div.appendChild(select("type", types, state.types.length === 1 ? state.types[0] : "",
          function (v) { state.types = v ? [v] : []; }));
        var years = meta.years.map(function (y) { return [y, y]; });
        if (years.length) {
          var lo = state.years ? state.years[0] : meta.years[0];
          var hi = state.years ? state.years[1] : meta.years[meta.years.length - 1];
          div.appendChild(select("from", years, lo, function (v) {
            var top = state.years ? state.years[1] : meta.years[meta.years.length - 1];
            state.years = [Number(v), Math.max(Number(v), top)];
          }));
          div.appendChild(select("to", years, hi, function (v) {
            var bottom = state.years ? state.years[0] : meta.years[0];
            state.years = [Math.min(Number(v), bottom), Number(v)];
          }));
        }
        div.appendChild(select("colours", meta.cmaps.map(function (c) { return [c, c]; }),
          state.cmap, function (v) { state.cmap = v; }));
        div.appendChild(select("scale", meta.scalings.map(function (s) { return [s, s]; }),
          state.scaling, function (v) { state.scaling = v; }));
        if (meta.normalizes) {
          div.appendChild(select("rank", meta.normalizes.map(function (n) {
            return [n, n === "local" ? "within ~2 km" : "whole map"];
          }), state.normalize, function (v) { state.normalize = v; }));
        }
        return div;
      }
    });
    new Controls().addTo(map);
  }
  if (meta.explorer) {  // the explorer tiles, fetched when first shown
    var tiles = L.layerGroup();
    L.control.layers(null, { "explorer tiles": tiles }, { position: "bottomright" }).addTo(map);
    map.on("overlayadd", function (e) {
      if (e.layer !== tiles || tiles.getLayers().length) { return; }
      fetch(meta.explorer).then(function (r) { return r.json(); }).then(function (boxes) {
        (boxes || []).forEach(function (t) {
          L.rectangle([[t[1], t[0]], [t[3], t[2]]], { color: "#ff8c00", weight: 1,
            fillOpacity: 0.1, interactive: false }).addTo(tiles);
        });
      });
    });
  }
  var Legend = L.Control.extend({
    options: { position: "bottomleft" },
    onAdd: function () {
      var div = L.DomUtil.create("div", "geoheat-legend");
      div.id = "geoheat-legend";
      return div;
    }
  });
  new Legend().addTo(map);
  legendBox = document.getElementById("geoheat-legend");
  map.on("moveend", writeHash);
  map.on("zoomend", drawLegend);
  writeHash();
  applyStyle();
  drawLegend();
  window.geoheat = { map: map, heat: heat, meta: meta, state: state };
})();
