//! The state reader with the real PP-OCRv4 models on the development set's
//! real plate crops (`../shared/data/plates/us-states`).
//!
//! Needs ONNX Runtime (as `tests/recognise.rs`) and the PP-OCR models in
//! `.runtime/ppocr/` (`scripts/setup.sh` or `bash scripts/install-ppocr.sh`).
//! Without the models the tests say so loudly and pass as skipped, except
//! under `CI=true`, where they fail.

use std::path::{Path, PathBuf};

use alpr_edge::recognise::labelled::state_labels;
use alpr_edge::recognise::state::models::TEXT_RECOGNISER;
use alpr_edge::recognise::state::{StateOptions, StateReader};
use alpr_edge::recognise::{decode, RgbImage};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The reader, or `None` (skip) when the models are not installed outside
/// CI. Any other failure to load fails the test.
fn reader() -> Option<StateReader> {
    match StateReader::load(StateOptions::default()) {
        Ok(r) => Some(r),
        Err(alpr_edge::recognise::state::StateLoadError::Locate(e)) if !in_ci() => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("cannot load the state reader: {e}"),
    }
}

/// A missing or altered model is named, and nothing is loaded from it.
#[test]
fn a_missing_or_altered_model_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = StateReader::load_from(dir.path(), StateOptions::default()).expect_err("empty");
    assert!(e.to_string().contains(TEXT_RECOGNISER.file), "{e}");
    std::fs::write(dir.path().join(TEXT_RECOGNISER.file), b"altered").expect("write");
    let e = StateReader::load_from(dir.path(), StateOptions::default()).expect_err("altered");
    let msg = e.to_string();
    assert!(
        msg.contains(TEXT_RECOGNISER.file) && msg.contains("not the pinned file"),
        "{msg}"
    );
}

fn image(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).expect("read crop");
    decode(&bytes).expect("decode crop")
}

/// Of the states given on the development set, at least 95 % are right, and
/// most crops get one (a reader that always abstains would be useless).
#[test]
fn states_given_on_real_plates_are_right() {
    let Some(mut reader) = reader() else { return };
    let set = state_labels(&shared().join("data/plates/us-states")).expect("labels.csv");
    assert!(set.len() >= 200, "{} crops", set.len());
    let (mut given, mut right) = (0usize, 0usize);
    let mut wrong = Vec::new();
    for l in &set {
        let read = reader.read(&image(&l.image)).expect("read");
        assert!(read.top3.len() <= 3);
        assert!((0.0..=1.0).contains(&read.confidence));
        if let Some(s) = read.state {
            given += 1;
            assert!(
                read.evidence.is_some(),
                "a given state says what it was read from"
            );
            if s == l.state {
                right += 1;
            } else {
                wrong.push(format!("{}: {} read as {s}", l.image.display(), l.state));
            }
        }
    }
    let right_of_given = right as f64 / given.max(1) as f64;
    let given_share = given as f64 / set.len() as f64;
    assert!(
        right_of_given >= 0.95,
        "right of given {right_of_given:.3}: {wrong:?}"
    );
    assert!(given_share >= 0.8, "given {given_share:.3}");
}

/// A blank crop, noise, a truck's lettering and a piece of a street photo
/// without a plate give no state.
#[test]
fn blank_and_non_plate_images_give_no_state() {
    let Some(mut reader) = reader() else { return };
    let (w, h) = (320u32, 160u32);
    let white = RgbImage::from_raw(w, h, vec![255; (w * h * 3) as usize]).expect("size");
    let black = RgbImage::from_raw(w, h, vec![0; (w * h * 3) as usize]).expect("size");
    let mut seed = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 24) as u8
        })
        .collect();
    let noise = RgbImage::from_raw(w, h, noise).expect("size");
    let photo = image(&shared().join("data/plates/us/car2.jpg"));
    // The photo's top-left quarter: road and scenery, no plate.
    let street = photo
        .crop(
            0.0,
            0.0,
            photo.width() as f32 / 2.0,
            photo.height() as f32 / 3.0,
        )
        .expect("crop");
    // The lettering on the back of a rental truck: words, but no state's.
    let (pw, ph) = (photo.width() as f32, photo.height() as f32);
    let lettering = photo
        .crop(0.15 * pw, 0.15 * ph, 0.75 * pw, 0.65 * ph)
        .expect("crop");
    for (name, img) in [
        ("lettering", lettering),
        ("white", white),
        ("black", black),
        ("noise", noise),
        ("street", street),
    ] {
        let read = reader.read(&img).expect("read");
        assert_eq!(read.state, None, "{name}: {read:?}");
    }
}
