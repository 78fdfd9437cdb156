//! How both backends make their rows: postcard records, the place index's
//! cells, the hour of a read. Neither backend imports the other; both
//! import this.

use super::records::StoreError;

/// Milliseconds in an hour (the unit of the reads-per-hour counts).
pub const HOUR_MS: u64 = 3_600_000;

/// Side of a geo cell: 0.01° of latitude and of longitude (about 1.1 km ×
/// 0.85 km at 40°N): a 500 m canvass reads at most 3 × 3 cells.
pub const CELL_E7: i32 = 100_000;

pub(crate) fn cell_of(lat_idx: i32, lon_idx: i32) -> u32 {
    let lat = (lat_idx + 9_000).clamp(0, 18_000) as u32;
    let lon = (lon_idx + 18_000).clamp(0, 36_000) as u32;
    (lat << 16) | lon
}

/// The index cell holding a position (degrees × 10⁷).
pub fn geo_cell(lat_e7: i32, lon_e7: i32) -> u32 {
    cell_of(lat_e7.div_euclid(CELL_E7), lon_e7.div_euclid(CELL_E7))
}

/// The coordinates a read carries, if any (measured or configured).
pub(crate) fn coordinates(loc: &alpr_shared::types::Location) -> Option<(i32, i32)> {
    use alpr_shared::types::Location;
    match loc {
        Location::Gps { lat_e7, lon_e7, .. } | Location::Configured { lat_e7, lon_e7, .. } => {
            Some((*lat_e7, *lon_e7))
        }
        Location::Site { .. } | Location::Unknown => None,
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("plain records always serialise")
}

/// A postcard row of `table`.
pub(crate) fn decode_row<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    table: &'static str,
) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}
