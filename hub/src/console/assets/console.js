// The console's one script (served from the hub; the page's CSP allows no
// other): live alerts and the map's radius picker. Pages work without it
// except for the live list.
"use strict";

// A map with data-pick="LAT_INPUT,LON_INPUT": a click sets the two inputs
// from the map's projection (data-west, data-east, data-north, data-south
// in degrees, over its viewBox; data-projection "plate" is linear in
// latitude, "mercator" is Web Mercator).
function setUpPickers() {
  document.querySelectorAll("svg[data-pick]").forEach((svg) => {
    const [latId, lonId] = svg.dataset.pick.split(",");
    svg.addEventListener("click", (ev) => {
      const box = svg.viewBox.baseVal;
      const pt = svg.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      const p = pt.matrixTransform(svg.getScreenCTM().inverse());
      const west = parseFloat(svg.dataset.west), east = parseFloat(svg.dataset.east);
      const north = parseFloat(svg.dataset.north), south = parseFloat(svg.dataset.south);
      const lon = west + (p.x - box.x) / box.width * (east - west);
      const down = (p.y - box.y) / box.height;
      let lat = north - down * (north - south);
      if (svg.dataset.projection === "mercator") {
        // Web Mercator (the tiles'): linear in ln(tan(pi/4 + lat/2)).
        const m = (deg) => Math.log(Math.tan(Math.PI / 4 + deg * Math.PI / 360));
        const y = m(north) - down * (m(north) - m(south));
        lat = (2 * Math.atan(Math.exp(y)) - Math.PI / 2) * 180 / Math.PI;
      }
      const lat_in = document.getElementById(latId), lon_in = document.getElementById(lonId);
      if (lat_in && lon_in) { lat_in.value = lat.toFixed(5); lon_in.value = lon.toFixed(5); }
    });
  });
}

// An element with data-live="URL" is refreshed from server-sent events at
// URL: each event's data is HTML made (and escaped) by the hub for the
// element's <tbody>; the newest first.
function setUpLive() {
  document.querySelectorAll("[data-live]").forEach((el) => {
    const source = new EventSource(el.dataset.live);
    const status = document.getElementById("live-status");
    source.addEventListener("open", () => { if (status) status.textContent = "live"; });
    // Closed for good (the session ended): say so rather than "reconnecting".
    source.addEventListener("error", () => {
      if (status) {
        status.textContent = source.readyState === EventSource.CLOSED
          ? "stopped: reload the page (log in again if your session ended)"
          : "reconnecting…";
      }
    });
    source.addEventListener("alerts", (ev) => {
      const body = el.querySelector("tbody") || el;
      const template = document.createElement("template");
      template.innerHTML = ev.data;
      body.replaceChildren(template.content);
    });
  });
}

document.addEventListener("DOMContentLoaded", () => { setUpPickers(); setUpLive(); });
