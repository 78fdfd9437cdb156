//! Sample data for tests and the benchmarks (`alpr-bench`): plausible
//! reads that exercise the store without a camera.

use alpr_shared::crypto::sha256;
use alpr_shared::types::{Location, ReadContent};

/// A plausible read: a plate from a small space, a site, model names.
pub fn sample_read(i: u64) -> ReadContent {
    const L: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let plate = format!(
        "{}{}{}{:04}",
        L[(i % 23) as usize] as char,
        L[(i / 23 % 23) as usize] as char,
        L[(i / 529 % 23) as usize] as char,
        i % 10_000
    );
    ReadContent {
        location: Location::Site {
            site_id: format!("site-{}", i % 50),
        },
        camera: "cam-1".into(),
        char_confidence: vec![9500; plate.len()],
        plate,
        confidence: 9400,
        region: Some("US-CA".into()),
        detector_model: "plate-det-v1".into(),
        ocr_model: "plate-ocr-v1".into(),
        crop_hash: sha256(&i.to_be_bytes()),
        overview_hash: sha256(&(i ^ u64::MAX).to_be_bytes()),
    }
}
