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
        issuer: alpr_shared::types::Issuer::Region("US-CA".into()),
        detector_model: "plate-det-v1".into(),
        ocr_model: "plate-ocr-v1".into(),
        crop_hash: sha256(&i.to_be_bytes()),
        overview_hash: sha256(&(i ^ u64::MAX).to_be_bytes()),
    }
}

/// An alert on a bulk NCIC entry for `plate` (the store contract's and the alerts' tests).
pub fn sample_alert(read_seq: u64, plate: &str, covert: bool) -> alpr_shared::log::AlertRecord {
    alpr_shared::log::AlertRecord {
        read_seq,
        list: alpr_shared::hotlist::ListRef::Bulk {
            source: "ncic".into(),
            generation: 2,
            issued_at: alpr_shared::types::UnixMillis(1_000),
        },
        entry: alpr_shared::hotlist::HotEntry {
            plate: plate.into(),
            state: "CA".into(),
            category: alpr_shared::hotlist::Category::StolenVehicle,
            ..alpr_shared::hotlist::HotEntry::default()
        },
        kind: alpr_shared::hotlist::MatchKind::StateUnread,
        matched_text: plate.into(),
        level: alpr_shared::hotlist::AlertLevel::Standard,
        covert,
        list_age_ms: 3_600_000,
        list_stale: false,
        past_match: false,
    }
}
