// geoheat's page: the heat over an OpenStreetMap basemap, with filters kept in the URL hash.
// The settings come from the page itself (geoheat-meta), written by `geoheat serve` or
// `geoheat build --site`. Hash: #map=ZOOM/LAT/LON&type=Run,Ride&years=2019-2023&cmap=hot&scaling=cdf
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("geoheat-meta").textContent);
  var view = meta.view || {};
  var state = {
    types: view.types ? view.types.slice() : [],
    years: view.years ? view.years.slice() : null,
    cmap: view.cmap || null,
    scaling: view.scaling || null,
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
  }

  function writeHash() {
    var c = map.getCenter(), z = map.getZoom();
    var digits = Math.max(0, Math.ceil(Math.log(Math.pow(2, z)) / Math.LN10) + 1);
    var parts = ["map=" + z + "/" + c.lat.toFixed(digits) + "/" + c.lng.toFixed(digits)];
    if (meta.dynamic) {
      parts.push("type=" + (state.types.length ? state.types.join(",") : "all"));
      parts.push("years=" + (state.years ? state.years.join("-") : "all"));
      parts.push("cmap=" + state.cmap, "scaling=" + state.scaling);
    }
    history.replaceState(null, "", "#" + parts.join("&"));
  }

  function tileUrl() {
    var url = meta.tiles;
    if (!meta.dynamic) { return url; }
    var query = ["c=" + encodeURIComponent(state.cmap), "s=" + encodeURIComponent(state.scaling),
                 "t=" + encodeURIComponent(state.types.join(",")),
                 "y=" + (state.years ? state.years.join("-") : "")];
    return url + "?" + query.join("&");
  }

  readHash();
  var map = L.map("map", { maxZoom: 19, zoomSnap: 1 });
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
  var heat = L.tileLayer(tileUrl(), heatOptions).addTo(map);
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
  map.on("moveend", writeHash);
  writeHash();
  window.geoheat = { map: map, heat: heat, meta: meta, state: state };
})();
