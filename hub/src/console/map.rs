//! Maps drawn by the console, as SVG made on the hub: nothing is fetched
//! from outside unless `[console] tile_url` names the agency's own tile
//! server.
//!
//! - **Without tiles** the projection is equirectangular with the
//!   longitude scaled by cos(latitude) at the middle of the area, so a
//!   town's streets keep their shape.
//! - **With tiles** it is Web Mercator, the tiles' own projection, and the
//!   tiles (`{z}/{x}/{y}` of the zoom that fits the area) lie under the
//!   points, with the tiles' attribution under the map.
//!
//! The area is the box of everything shown (nodes, reads, a canvass
//! circle), padded and widened to the map's shape. The SVG carries
//! `data-west/east/north/south` (the edges of its viewBox, in degrees) and
//! `data-projection`, from which `console.js` turns a click back into a
//! latitude and longitude for the inputs named in `data-pick`.

use maud::{html, Markup};

use super::ConsoleConfig;

/// The map's size in viewBox units (and CSS pixels at full size).
pub const WIDTH: f64 = 800.0;
pub const HEIGHT: f64 = 560.0;
/// Metres in a degree of latitude (and of longitude at the equator).
const M_PER_DEG: f64 = 111_320.0;
/// The equator's length in metres (Web Mercator's sphere).
const EQUATOR_M: f64 = 40_075_016.686;
/// Web Mercator's latitude limit.
const MERCATOR_MAX_LAT: f64 = 85.051_128_78;
/// The smallest area shown, in degrees of latitude (about 1 km).
const MIN_SPAN_DEG: f64 = 0.01;
/// Most tiles drawn under one map.
const MAX_TILES: usize = 100;
/// The deepest tile zoom asked of a tile server.
const MAX_ZOOM: i32 = 19;

/// Something placed on a map: where, and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Degrees.
    pub lat: f64,
    pub lon: f64,
    pub label: String,
}

/// A canvass circle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

/// What one map shows.
#[derive(Debug, Clone, Default)]
pub struct MapInput {
    /// Nodes at their configured positions (`.node`, named).
    pub nodes: Vec<Marker>,
    /// Reads (`.read`).
    pub reads: Vec<Marker>,
    /// A canvass (`.radius`).
    pub circle: Option<Circle>,
}

impl MapInput {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.reads.is_empty() && self.circle.is_none()
    }
}

/// How degrees become the map's plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Projection {
    /// x = lon · cos(lat₀), y = −lat (degrees).
    Plate { cos: f64 },
    /// Web Mercator on the unit square (x east, y south, 0..1).
    Mercator,
}

impl Projection {
    fn name(self) -> &'static str {
        match self {
            Projection::Plate { .. } => "plate",
            Projection::Mercator => "mercator",
        }
    }

    /// Plane coordinates of a place.
    fn forward(self, lat: f64, lon: f64) -> (f64, f64) {
        match self {
            Projection::Plate { cos } => (lon * cos, -lat),
            Projection::Mercator => (
                (lon + 180.0) / 360.0,
                (1.0 - mercator_y(lat) / std::f64::consts::PI) / 2.0,
            ),
        }
    }

    /// The place at plane coordinates.
    fn backward(self, x: f64, y: f64) -> (f64, f64) {
        match self {
            Projection::Plate { cos } => (-y, x / cos),
            Projection::Mercator => (
                inverse_mercator_y((1.0 - 2.0 * y) * std::f64::consts::PI),
                x * 360.0 - 180.0,
            ),
        }
    }

    /// Metres per plane unit at latitude `lat`.
    fn metres_per_unit(self, lat: f64) -> f64 {
        match self {
            Projection::Plate { .. } => M_PER_DEG,
            Projection::Mercator => EQUATOR_M * lat.to_radians().cos(),
        }
    }
}

/// ln(tan(π/4 + φ/2)) of a latitude in degrees (clamped to Mercator's).
fn mercator_y(lat: f64) -> f64 {
    let phi = lat.clamp(-MERCATOR_MAX_LAT, MERCATOR_MAX_LAT).to_radians();
    (std::f64::consts::FRAC_PI_4 + phi / 2.0).tan().ln()
}

/// The latitude in degrees of a Mercator ln(tan(π/4 + φ/2)).
fn inverse_mercator_y(m: f64) -> f64 {
    (2.0 * m.exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees()
}

/// A map's area: the plane rectangle shown in the viewBox
/// `0 0 WIDTH HEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub projection: Projection,
    /// Plane coordinates of the top-left corner.
    x0: f64,
    y0: f64,
    /// ViewBox units per plane unit.
    scale: f64,
}

impl View {
    /// The view that shows `input`, padded and widened to the map's shape;
    /// with nothing to show, most of the world.
    pub fn fit(input: &MapInput, mercator: bool) -> View {
        let mut lats = Vec::new();
        let mut lons = Vec::new();
        for m in input.nodes.iter().chain(&input.reads) {
            lats.push(m.lat);
            lons.push(m.lon);
        }
        if let Some(c) = input.circle {
            let dlat = c.radius_m / M_PER_DEG;
            let dlon = c.radius_m / (M_PER_DEG * c.lat.to_radians().cos().max(0.01));
            lats.extend([c.lat - dlat, c.lat + dlat]);
            lons.extend([c.lon - dlon, c.lon + dlon]);
        }
        let range = |v: &[f64], lo: f64, hi: f64| {
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if min.is_finite() && max.is_finite() {
                (min.clamp(lo, hi), max.clamp(lo, hi))
            } else {
                (lo, hi)
            }
        };
        let (south, north) = if lats.is_empty() {
            (-90.0, 90.0)
        } else {
            range(&lats, -MERCATOR_MAX_LAT, MERCATOR_MAX_LAT)
        };
        let (west, east) = range(&lons, -180.0, 180.0);
        // At least about a kilometre across, centred on what is shown.
        let grow = |lo: f64, hi: f64, min: f64| {
            let mid = (lo + hi) / 2.0;
            let half = ((hi - lo) / 2.0).max(min / 2.0);
            (mid - half, mid + half)
        };
        let (south, north) = grow(south, north, MIN_SPAN_DEG);
        let mid_lat = (south + north) / 2.0;
        let cos = mid_lat.to_radians().cos().max(0.01);
        let (west, east) = grow(west, east, MIN_SPAN_DEG / cos);
        let projection = if mercator {
            Projection::Mercator
        } else {
            Projection::Plate { cos }
        };
        let (xa, ya) = projection.forward(north, west);
        let (xb, yb) = projection.forward(south, east);
        let (mut w, mut h) = (xb - xa, yb - ya);
        let (cx, cy) = ((xa + xb) / 2.0, (ya + yb) / 2.0);
        // Pad by an eighth each side, then widen to the map's shape.
        w *= 1.25;
        h *= 1.25;
        if w / h < WIDTH / HEIGHT {
            w = h * WIDTH / HEIGHT;
        } else {
            h = w * HEIGHT / WIDTH;
        }
        // Never beyond the poles: at most the whole height of the plane.
        let (top, bottom) = match projection {
            Projection::Plate { .. } => (-90.0, 90.0),
            Projection::Mercator => (0.0, 1.0),
        };
        if h > bottom - top {
            h = bottom - top;
            w = h * WIDTH / HEIGHT;
        }
        let cy = cy.clamp(top + h / 2.0, bottom - h / 2.0);
        View {
            projection,
            x0: cx - w / 2.0,
            y0: cy - h / 2.0,
            scale: WIDTH / w,
        }
    }

    /// ViewBox coordinates of a place.
    pub fn project(&self, lat: f64, lon: f64) -> (f64, f64) {
        let (x, y) = self.projection.forward(lat, lon);
        ((x - self.x0) * self.scale, (y - self.y0) * self.scale)
    }

    /// The place at viewBox coordinates.
    pub fn unproject(&self, x: f64, y: f64) -> (f64, f64) {
        self.projection
            .backward(self.x0 + x / self.scale, self.y0 + y / self.scale)
    }

    /// What the picker reads from the SVG's data attributes.
    pub fn edges(&self) -> Edges {
        let (north, west) = self.unproject(0.0, 0.0);
        let (south, east) = self.unproject(WIDTH, HEIGHT);
        Edges {
            west,
            east,
            north,
            south,
            mercator: matches!(self.projection, Projection::Mercator),
        }
    }

    /// Metres per viewBox unit at latitude `lat`.
    fn metres_per_unit(&self, lat: f64) -> f64 {
        self.projection.metres_per_unit(lat) / self.scale
    }

    /// The tile zoom whose tiles are closest to 256 units wide.
    fn zoom(&self) -> i32 {
        // Mercator plane units are the whole world: a tile of zoom z is
        // 2^-z of it, `scale / 2^z` units wide.
        let z = (self.scale / 256.0).log2().round();
        if z.is_finite() {
            (z as i32).clamp(0, MAX_ZOOM)
        } else {
            0
        }
    }
}

/// The edges of a map's viewBox in degrees, as the SVG's data attributes
/// carry them for the picker in `console.js`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edges {
    pub west: f64,
    pub east: f64,
    pub north: f64,
    pub south: f64,
    pub mercator: bool,
}

/// A scale bar's length in metres: 1, 2 or 5 × 10ⁿ, at most `most`.
fn nice_length(most: f64) -> f64 {
    if most.is_nan() || most <= 0.0 {
        return 1.0;
    }
    let base = 10f64.powf(most.log10().floor());
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|k| k * base)
        .find(|l| *l <= most)
        .unwrap_or(base)
}

/// A length in kilometres as people read it (`0.2 km`, `5 km`).
fn km(metres: f64) -> String {
    let k = metres / 1000.0;
    if k >= 1.0 {
        format!("{k:.0} km")
    } else {
        let s = format!("{k:.3}");
        format!("{} km", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A tile under the map: its URL and where it lies in the viewBox.
#[derive(Debug, Clone, PartialEq)]
struct Tile {
    url: String,
    x: f64,
    y: f64,
    size: f64,
}

/// The tiles of `template` that cover the view (Mercator only).
fn tiles(view: &View, template: &str) -> Vec<Tile> {
    let z = view.zoom();
    let n = 1i64 << z;
    let size = view.scale / n as f64;
    let first = |p: f64| (p * n as f64).floor() as i64;
    let (tx0, ty0) = (first(view.x0), first(view.y0));
    let tx1 = first(view.x0 + WIDTH / view.scale);
    let ty1 = first(view.y0 + HEIGHT / view.scale);
    let mut out = Vec::new();
    for ty in ty0.max(0)..=ty1.min(n - 1) {
        for tx in tx0..=tx1 {
            if out.len() >= MAX_TILES {
                return out;
            }
            let url = template
                .replace("{z}", &z.to_string())
                .replace("{x}", &tx.rem_euclid(n).to_string())
                .replace("{y}", &ty.to_string());
            out.push(Tile {
                url,
                x: (tx as f64 / n as f64 - view.x0) * view.scale,
                y: (ty as f64 / n as f64 - view.y0) * view.scale,
                size,
            });
        }
    }
    out
}

/// The map `id` of `input`, as an SVG; with `pick`, clicking it fills the
/// latitude and longitude inputs of those ids.
pub fn render(
    config: &ConsoleConfig,
    id: &str,
    input: &MapInput,
    pick: Option<(&str, &str)>,
) -> Markup {
    let template = config
        .tile_url
        .as_deref()
        .filter(|_| config.tile_origin().is_some());
    let view = View::fit(input, template.is_some());
    let edges = view.edges();
    let tiles = template.map(|t| tiles(&view, t)).unwrap_or_default();
    let centre = (edges.north + edges.south) / 2.0;
    let bar_m = nice_length(WIDTH / 4.0 * view.metres_per_unit(centre));
    let bar = bar_m / view.metres_per_unit(centre);
    let f = |v: f64| format!("{v:.1}");
    let deg = |v: f64| format!("{v:.6}");
    let label = format!(
        "Map: {} node(s), {} read(s) placed{}",
        input.nodes.len(),
        input.reads.len(),
        if input.circle.is_some() {
            ", the canvass circle"
        } else {
            ""
        }
    );
    html! {
        figure class="map-figure" {
            svg id=(id) class=(if input.is_empty() { "map empty" } else { "map" }) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
                width=(WIDTH) height=(HEIGHT) role="img" aria-label=(label)
                data-west=(deg(edges.west)) data-east=(deg(edges.east))
                data-north=(deg(edges.north)) data-south=(deg(edges.south))
                data-projection=(view.projection.name())
                data-pick=[pick.map(|(lat, lon)| format!("{lat},{lon}"))] {
                rect class="ground" x="0" y="0" width=(WIDTH) height=(HEIGHT) {}
                @for t in &tiles {
                    image class="tile" href=(t.url) x=(f(t.x)) y=(f(t.y))
                        width=(f(t.size)) height=(f(t.size)) {}
                }
                @if let Some(c) = input.circle {
                    @let (x, y) = view.project(c.lat, c.lon);
                    circle class="radius" cx=(f(x)) cy=(f(y))
                        r=(f(c.radius_m / view.metres_per_unit(c.lat))) {
                        title { "Canvass: " (c.radius_m) " m around " (deg(c.lat)) "," (deg(c.lon)) }
                    }
                }
                @for n in &input.nodes {
                    @let (x, y) = view.project(n.lat, n.lon);
                    g class="node-marker" {
                        rect class="node" x=(f(x - 6.0)) y=(f(y - 6.0)) width="12" height="12"
                            data-x=(f(x)) data-y=(f(y)) {
                            title { "Node " (n.label) }
                        }
                        text x=(f(x + 9.0)) y=(f(y - 8.0)) { (n.label) }
                    }
                }
                // Reads over the nodes: a read at a pole is seen on its marker.
                @for r in &input.reads {
                    @let (x, y) = view.project(r.lat, r.lon);
                    circle class="read" cx=(f(x)) cy=(f(y)) r="5" { title { (r.label) } }
                }
                g class="scale" {
                    line x1="20" y1=(f(HEIGHT - 20.0)) x2=(f(20.0 + bar)) y2=(f(HEIGHT - 20.0)) {}
                    text x="20" y=(f(HEIGHT - 28.0)) { (km(bar_m)) }
                }
            }
            @if !tiles.is_empty() {
                @if let Some(a) = &config.tile_attribution {
                    figcaption class="map-attribution" { (a) }
                }
            }
            @if input.is_empty() {
                figcaption class="muted" {
                    "No position to draw, so the map shows the world: reads at a surveyed site or without a GPS fix carry no coordinates."
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    /// The place under viewBox point (x, y), computed as `console.js`
    /// does from the SVG's data attributes alone.
    fn pick(e: &Edges, x: f64, y: f64) -> (f64, f64) {
        let lon = e.west + x / WIDTH * (e.east - e.west);
        let lat = if e.mercator {
            let (n, s) = (mercator_y(e.north), mercator_y(e.south));
            inverse_mercator_y(n - y / HEIGHT * (n - s))
        } else {
            e.north - y / HEIGHT * (e.north - e.south)
        };
        (lat, lon)
    }

    fn sacramento() -> MapInput {
        MapInput {
            nodes: vec![
                Marker {
                    lat: 38.5816,
                    lon: -121.4944,
                    label: "pole-7".into(),
                },
                Marker {
                    lat: 38.5600,
                    lon: -121.4700,
                    label: "pole-9".into(),
                },
            ],
            reads: vec![Marker {
                lat: 38.5816,
                lon: -121.4944,
                label: "7ABC123".into(),
            }],
            circle: Some(Circle {
                lat: 38.57,
                lon: -121.48,
                radius_m: 800.0,
            }),
        }
    }

    /// The numbers of attribute `name` in `svg`, in order.
    fn attrs(svg: &str, name: &str) -> Vec<f64> {
        svg.split(&format!(" {name}=\""))
            .skip(1)
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect()
    }

    #[test]
    fn a_read_at_a_node_lands_on_its_marker_and_everything_is_inside() {
        for mercator in [false, true] {
            let input = sacramento();
            let view = View::fit(&input, mercator);
            let config = ConsoleConfig {
                tile_url: mercator.then(|| "https://tiles.agency.local/{z}/{x}/{y}.png".into()),
                tile_attribution: Some("© the county GIS".into()),
            };
            let svg = render(&config, "results-map", &input, None).into_string();
            // The node marker's centre and the read drawn at its position.
            let (nx, ny) = (attrs(&svg, "data-x")[0], attrs(&svg, "data-y")[0]);
            let (rx, ry) = (attrs(&svg, "cx")[1], attrs(&svg, "cy")[1]);
            assert!(
                near(nx, rx, 0.11) && near(ny, ry, 0.11),
                "{mercator}: {svg}"
            );
            for m in input.nodes.iter().chain(&input.reads) {
                let (x, y) = view.project(m.lat, m.lon);
                assert!(
                    (0.0..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y),
                    "{} at {x},{y}",
                    m.label
                );
            }
            // The 800 m circle is about 1.6 km across on the scale bar's terms.
            let r = attrs(&svg, "r")[0];
            let bar = attrs(&svg, "x2")[0] - 20.0;
            let bar_m: f64 = svg
                .split("<text x=\"20\"")
                .nth(1)
                .and_then(|s| s.split('>').nth(1))
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse::<f64>().ok())
                .map(|k| k * 1000.0)
                .expect("a scale label in km");
            assert!(
                near(r / bar * bar_m, 800.0, 8.0),
                "{mercator}: r={r} bar={bar} {bar_m} m"
            );
            assert_eq!(svg.contains("<image class=\"tile\""), mercator);
            assert_eq!(svg.contains("the county GIS"), mercator);
        }
    }

    #[test]
    fn the_pickers_inverse_gives_back_the_place() {
        for mercator in [false, true] {
            let view = View::fit(&sacramento(), mercator);
            let edges = view.edges();
            for (lat, lon) in [(38.5816, -121.4944), (38.57, -121.48), (38.56, -121.47)] {
                let (x, y) = view.project(lat, lon);
                let (plat, plon) = pick(&edges, x, y);
                assert!(
                    near(plat, lat, 1e-6) && near(plon, lon, 1e-6),
                    "{mercator}: {lat},{lon} → {x},{y} → {plat},{plon}"
                );
                let (ulat, ulon) = view.unproject(x, y);
                assert!(near(ulat, lat, 1e-9) && near(ulon, lon, 1e-9));
            }
        }
    }

    #[test]
    fn plate_projection_keeps_shapes_at_the_latitude() {
        // A kilometre east and a kilometre north are as long on the map.
        let view = View::fit(&sacramento(), false);
        let (lat, lon) = (38.57, -121.48);
        let (x0, y0) = view.project(lat, lon);
        let (xe, _) = view.project(lat, lon + 1000.0 / (M_PER_DEG * lat.to_radians().cos()));
        let (_, yn) = view.project(lat + 1000.0 / M_PER_DEG, lon);
        assert!(near(xe - x0, y0 - yn, 0.05), "{} vs {}", xe - x0, y0 - yn);
    }

    #[test]
    fn tiles_cover_the_view_at_a_sensible_zoom() {
        let view = View::fit(&sacramento(), true);
        let t = tiles(&view, "https://t.local/{z}/{x}/{y}.png");
        assert!(!t.is_empty() && t.len() <= 30, "{} tiles", t.len());
        let size = t[0].size;
        assert!((128.0..=512.0).contains(&size), "tile size {size}");
        assert!(t.iter().any(|t| t.x <= 0.0 && t.y <= 0.0));
        assert!(t
            .iter()
            .any(|t| t.x + t.size >= WIDTH && t.y + t.size >= HEIGHT));
        let z: i32 = t[0].url["https://t.local/".len()..]
            .split('/')
            .next()
            .and_then(|z| z.parse().ok())
            .expect("a zoom in the URL");
        assert!((11..=15).contains(&z), "a town-sized area at zoom {z}");
    }

    #[test]
    fn an_empty_map_still_has_an_area_and_says_so() {
        let svg = render(
            &ConsoleConfig::default(),
            "pick-map",
            &MapInput::default(),
            Some(("lat", "lon")),
        )
        .into_string();
        assert!(svg.contains("data-pick=\"lat,lon\""));
        assert!(svg.contains("No position to draw"));
        for mercator in [false, true] {
            let e = View::fit(&MapInput::default(), mercator).edges();
            assert!(e.west <= -100.0 && e.east >= 100.0, "{e:?}");
            assert!(e.north <= 90.0 + 1e-9 && e.south >= -90.0 - 1e-9, "{e:?}");
        }
    }

    #[test]
    fn scale_bars_are_round_lengths() {
        assert_eq!(nice_length(740.0), 500.0);
        assert_eq!(nice_length(2300.0), 2000.0);
        assert_eq!(nice_length(0.9), 0.5);
        assert_eq!(km(200.0), "0.2 km");
        assert_eq!(km(5000.0), "5 km");
    }
}
