//! Maps drawn by the console: an SVG of the area built from the nodes'
//! positions (no tile server), or tiles from `[console] tile_url`.
//! (To be built.)
