//! Recognition on real photos with the real models and ONNX Runtime.
//!
//! Needs the ONNX Runtime library (ORT_DYLIB_PATH, or `.runtime/onnxruntime/`
//! from `bash scripts/install-ort.sh`) and the team's `../shared` folder
//! beside the repository (models and labelled photos).

use std::path::{Path, PathBuf};
use std::process::Command;

use alpr_edge::recognise::batch;
use alpr_edge::recognise::labelled::labelled_folder;
use alpr_edge::recognise::models::{DETECTOR, OCR_V2};
use alpr_edge::recognise::{
    decode, ModelError, RecogniseError, Recogniser, RecogniserOptions, RgbImage,
};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn models() -> PathBuf {
    shared().join("models")
}

fn us_photos() -> PathBuf {
    shared().join("data/plates/us")
}

fn open() -> Recogniser {
    match Recogniser::open(&models(), RecogniserOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!(
            "cannot open the recogniser ({e}); install ONNX Runtime with \
             `bash scripts/install-ort.sh` or set ORT_DYLIB_PATH"
        ),
    }
}

/// A sample of photos with their ground truth, read exactly.
#[test]
fn reads_a_sample_of_us_photos_exactly() {
    let mut rec = open();
    let sample = [
        "0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg",
        "12c6cb72-3ea3-49e7-b381-e0cdfc5e8960.jpg",
        "21d8c31d-3deb-494b-9c63-c0223306fd82.jpg",
        "car11.jpg",
        "car2.jpg",
        "car9-5.jpg",
        "wts-lg-000197.jpg",
    ];
    let set = labelled_folder(&us_photos()).expect("labelled photos");
    for name in sample {
        let Some(l) = set.iter().find(|l| l.image.ends_with(name)) else {
            continue;
        };
        let (reads, _) = rec.recognise_file(&l.image).expect("recognise");
        let first = reads.first().expect("a plate");
        assert_eq!(first.text, l.plate, "{name}");
        assert!(first.confidence > 0.5, "{name}: {}", first.confidence);
        assert_eq!(first.char_confidence.len(), first.text.len());
        assert_eq!(first.detector_model, "yolo-v9-t-416@5a5eac89");
        assert!(first.ocr_model.starts_with("cct_xs_v2_global@8031afb5"));
        assert!(first.bbox.x2 > first.bbox.x1 && first.bbox.y2 > first.bbox.y1);
        assert!(first.crop.width() > 10 && first.crop.height() > 5);
        let jpeg = first.crop_jpeg().expect("crop jpeg");
        assert!(decode(&jpeg).is_ok());
    }
    // The O/0 decision is visible and the O spelling kept.
    let l = set
        .iter()
        .find(|l| {
            l.image
                .ends_with("12c6cb72-3ea3-49e7-b381-e0cdfc5e8960.jpg")
        })
        .expect("photo present");
    let (reads, _) = rec.recognise_file(&l.image).expect("recognise");
    assert_eq!(reads[0].text, "0SG719");
    assert!(reads[0].alternatives.iter().any(|a| a.text == "OSG719"));
    assert_eq!(
        reads[0].region.as_ref().map(|r| r.name.as_str()),
        Some("United States")
    );
}

/// The whole US development set on both cores: an accuracy floor.
#[test]
fn accuracy_floor_on_the_us_set() {
    let set = labelled_folder(&us_photos()).expect("labelled photos");
    assert!(
        set.len() >= 100,
        "expected the US photo set, found {}",
        set.len()
    );
    let paths: Vec<PathBuf> = set.iter().map(|l| l.image.clone()).collect();
    let mut exact = 0;
    let mut errors = Vec::new();
    batch::recognise_files(
        &models(),
        &RecogniserOptions::default(),
        batch::default_workers(),
        &paths,
        |r| match r.result {
            Ok((reads, _)) => {
                if reads.first().map(|p| p.text.as_str()) == Some(set[r.index].plate.as_str()) {
                    exact += 1;
                }
            }
            Err(e) => errors.push(format!("{}: {e}", r.path.display())),
        },
    )
    .expect("open recognisers");
    assert!(errors.is_empty(), "{errors:?}");
    let acc = exact as f64 / set.len() as f64;
    // We measure about 94 % here; the peer (fast-alpr) reads 83 %.
    assert!(
        acc >= 0.88,
        "exact first-guess accuracy {exact}/{} = {acc:.3}",
        set.len()
    );
}

#[test]
fn no_plate_gives_an_empty_list() {
    let mut rec = open();
    let grey = RgbImage::from_raw(640, 480, vec![120; 640 * 480 * 3]).expect("size");
    assert!(rec.recognise(&grey).expect("runs").is_empty());
}

#[test]
fn a_corrupt_image_is_a_clear_error() {
    let mut rec = open();
    let dir = tempfile::tempdir().expect("tempdir");
    let good =
        std::fs::read(us_photos().join("0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg")).expect("photo");
    let bad = dir.path().join("truncated.jpg");
    std::fs::write(&bad, &good[..600]).expect("write");
    let e = rec.recognise_file(&bad).expect_err("truncated JPEG");
    assert!(matches!(e, RecogniseError::Decode(_)), "{e}");
    assert!(e.to_string().contains("JPEG"), "{e}");
    let e = rec
        .recognise_file(&dir.path().join("absent.jpg"))
        .expect_err("absent file");
    assert!(e.to_string().contains("absent.jpg"), "{e}");
}

#[test]
fn a_missing_or_altered_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Recogniser::open(dir.path(), RecogniserOptions::default()).expect_err("no models");
    assert!(matches!(e, ModelError::Missing { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(DETECTOR.file) && msg.contains(OCR_V2.file),
        "{msg}"
    );

    for m in [
        "yolo-v9-t-416-license-plates-end2end1.onnx",
        "cct_xs_v2_global.onnx",
        "cct_xs_v1_global.onnx",
    ] {
        std::fs::copy(models().join(m), dir.path().join(m)).expect("copy model");
    }
    let mut bytes = std::fs::read(dir.path().join(OCR_V2.file)).expect("read");
    bytes[1000] ^= 0xFF;
    std::fs::write(dir.path().join(OCR_V2.file), bytes).expect("write");
    let e = Recogniser::open(dir.path(), RecogniserOptions::default()).expect_err("altered model");
    assert!(matches!(e, ModelError::WrongHash { .. }), "{e}");
    assert!(e.to_string().contains(OCR_V2.file), "{e}");
}

/// `edge recognize --json`: one line per file, an error line for the bad
/// one, the others still done, non-zero exit at the end.
#[test]
fn cli_reports_each_file_and_fails_at_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("corrupt.jpg");
    std::fs::write(&bad, b"\xFF\xD8\xFF\xE0 definitely not a photo").expect("write");
    let good = us_photos().join("0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("recognize")
        .arg("--json")
        .arg("--models")
        .arg(models())
        .arg(&bad)
        .arg(&good)
        .output()
        .expect("run edge");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("JPEG")),
        "{stdout}"
    );
    assert_eq!(lines[1]["plates"][0]["text"], "YG9X2G", "{stdout}");
    assert_eq!(
        lines[1]["plates"][0]["box"].as_array().map(Vec::len),
        Some(4)
    );
    assert!(lines[1]["ms"].as_f64().is_some());
    // The photo has no EXIF capture time: its time is the file's.
    assert_eq!(lines[1]["time_source"], "file-time", "{stdout}");
    assert!(lines[1]["captured_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(["recognize", "--models", "/nonexistent/models"])
        .arg(&good)
        .output()
        .expect("run edge");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/models"), "{stderr}");
}

/// What the store needs: every read converts into a valid `ReadContent`.
#[test]
fn reads_fit_the_signed_read_format() {
    use alpr_shared::types::{confidence_from_f32, Location, ReadContent};
    use sha2::{Digest, Sha256};
    let mut rec = open();
    let (reads, _) = rec
        .recognise_file(&us_photos().join("wts-lg-000197.jpg"))
        .expect("recognise");
    let r = reads.first().expect("a plate");
    let crop = r.crop_jpeg().expect("jpeg");
    let content = ReadContent {
        location: Location::Site {
            site_id: "test".into(),
        },
        camera: "cam".into(),
        plate: r.text.clone(),
        confidence: confidence_from_f32(r.confidence),
        char_confidence: r
            .char_confidence
            .iter()
            .map(|&c| confidence_from_f32(c))
            .collect(),
        issuer: alpr_shared::types::Issuer::from_region(r.region.as_ref().map(|g| g.name.clone())),
        detector_model: r.detector_model.clone(),
        ocr_model: r.ocr_model.clone(),
        crop_hash: alpr_shared::types::Hash32(Sha256::digest(&crop).into()),
        overview_hash: alpr_shared::types::Hash32::ZERO,
    };
    content.validate().expect("valid read content");
}

/// A stream: frames of one car (the photo shifted a little, as a moving
/// camera view would), a gap, frames of another car → one read per pass.
#[test]
fn a_stream_gives_one_read_per_vehicle_pass() {
    use alpr_edge::recognise::fusion::{Tracker, TrackerConfig};
    use std::time::Duration;
    let mut rec = open();
    let set = labelled_folder(&us_photos()).expect("labelled photos");
    let car = |name: &str| {
        let l = set
            .iter()
            .find(|l| l.image.ends_with(name))
            .expect("photo present");
        let img = decode(&std::fs::read(&l.image).expect("read")).expect("decode");
        (img, l.plate.clone())
    };
    let (a, a_plate) = car("car9-0.jpg");
    let (b, b_plate) = car("car9-5.jpg");
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut passes = Vec::new();
    let mut t = Duration::ZERO;
    for (img, frames) in [(&a, 3), (&b, 3)] {
        for i in 0..frames {
            let shift = 12.0 * i as f32;
            let (w, h) = (img.width() as f32, img.height() as f32);
            let frame = img
                .crop(shift, shift / 2.0, w - 24.0 + shift, h - 12.0 + shift / 2.0)
                .expect("crop");
            let reads = rec.recognise(&frame).expect("recognise");
            passes.extend(tracker.push(t, reads));
            t += Duration::from_millis(100);
        }
        t += Duration::from_secs(5);
    }
    passes.extend(tracker.flush());
    let texts: Vec<&str> = passes.iter().map(|p| p.read.text.as_str()).collect();
    assert_eq!(texts, [a_plate.as_str(), b_plate.as_str()]);
    assert!(passes.iter().all(|p| p.frames == 3));
}

/// Motion-JPEG video: real photos back to back are split, decoded and read.
#[test]
fn an_mjpeg_clip_replays_frame_by_frame() {
    use alpr_edge::capture::{MjpegFile, Source};
    let mut rec = open();
    let set = labelled_folder(&us_photos()).expect("labelled photos");
    let picks: Vec<_> = set
        .iter()
        .filter(|l| l.image.to_string_lossy().contains("car9-"))
        .take(3)
        .collect();
    assert_eq!(picks.len(), 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip.mjpeg");
    let mut bytes = Vec::new();
    for l in &picks {
        bytes.extend(std::fs::read(&l.image).expect("read"));
    }
    std::fs::write(&clip, bytes).expect("write");
    let mut src = MjpegFile::open(&clip, 25.0).expect("open");
    let mut texts = Vec::new();
    while let Some(frame) = src.next_frame() {
        let frame = frame.expect("frame");
        let reads = rec.recognise(&frame.image).expect("recognise");
        texts.push(reads.first().map(|r| r.text.clone()).unwrap_or_default());
    }
    let want: Vec<String> = picks.iter().map(|l| l.plate.clone()).collect();
    assert_eq!(texts, want);
}
