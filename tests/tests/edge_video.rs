//! A video stream gives one read per vehicle pass, not one per frame: a
//! Motion-JPEG clip of two cars, each seen in several frames with empty road
//! between them, becomes exactly two signed reads.

use std::time::Duration;

use alpr_e2e::story::frames_done;
use alpr_e2e::{free_udp_port, wait_for, Edge, EdgeOptions, Pki};
use alpr_edge::recognise::image::RgbImage;
use alpr_shared::types::DeviceKind;

#[test]
fn a_clip_of_two_cars_gives_two_reads() -> anyhow::Result<()> {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let photos = shared.join("data/plates/us");
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node_of_kind("pole-3", DeviceKind::Pole)?;

    // 10 fps: car A for 0.6 s, 2 s of empty road, car B for 0.6 s.
    let road = RgbImage::from_raw(640, 480, vec![90; 640 * 480 * 3])
        .expect("image")
        .encode_jpeg(80)
        .map_err(anyhow::Error::msg)?;
    let a = std::fs::read(photos.join("car13.jpg"))?;
    let b = std::fs::read(photos.join("us10.jpg"))?;
    let mut clip = Vec::new();
    for frame in std::iter::repeat_n(&a, 6)
        .chain(std::iter::repeat_n(&road, 20))
        .chain(std::iter::repeat_n(&b, 6))
    {
        clip.extend_from_slice(frame);
    }
    let clip_path = dir.path().join("clip.mjpeg");
    std::fs::write(&clip_path, clip)?;

    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!(
            "\n[capture]\nvideo = {:?}\nvideo_fps = 10.0\nmodels_dir = {:?}\nsite_id = \"test-site\"\n",
            clip_path,
            shared.join("models").canonicalize()?
        ),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, nowhere, dir.path(), &opts)?;
    wait_for(Duration::from_secs(180), "the clip to end", || {
        frames_done(&edge.proc.log_text()).map(|_| ())
    })?;
    edge.proc.stop()?;

    let plates: Vec<String> = edge
        .stored_entries()?
        .iter()
        .filter_map(|e| e.read().map(|r| r.plate.clone()))
        .collect();
    assert_eq!(plates, ["EMR7094", "CC2881"], "one read per pass");
    Ok(())
}

/// Killed (-9) right after it stores a pass while another pass is still
/// open, a node reads that open pass's frames again on restart (so the
/// pass is not cut short or lost) and does not store the finished pass a
/// second time.
#[test]
fn a_killed_video_edge_stores_each_pass_once() -> anyhow::Result<()> {
    use alpr_e2e::story::parse_read;
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let photos = shared.join("data/plates/us");
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let node = pki.node_of_kind("pole-4", DeviceKind::Pole)?;

    // 10 fps: car A; then cars B and C in turn (two passes open at once);
    // B stays while C's pass closes; empty road.
    let road = RgbImage::from_raw(640, 480, vec![90; 640 * 480 * 3])
        .expect("image")
        .encode_jpeg(80)
        .map_err(anyhow::Error::msg)?;
    let a = std::fs::read(photos.join("car13.jpg"))?;
    let b = std::fs::read(photos.join("us10.jpg"))?;
    let c = std::fs::read(photos.join("0b86cecf-67d1-4fc0-87c9-b36b0ee228bb.jpg"))?;
    let mut frames: Vec<&Vec<u8>> = Vec::new();
    frames.extend(std::iter::repeat_n(&a, 3));
    for _ in 0..3 {
        frames.push(&b);
        frames.push(&c);
    }
    frames.extend(std::iter::repeat_n(&b, 22));
    frames.extend(std::iter::repeat_n(&road, 3));
    let clip: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    let clip_path = dir.path().join("clip.mjpeg");
    std::fs::write(&clip_path, clip)?;

    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let opts = EdgeOptions {
        generate: 0,
        extra_toml: format!(
            "\n[capture]\nvideo = {:?}\nvideo_fps = 10.0\nmodels_dir = {:?}\nsite_id = \"test-site\"\n",
            clip_path,
            shared.join("models").canonicalize()?
        ),
        ..EdgeOptions::default()
    };
    let mut edge = Edge::start(&node, nowhere, dir.path(), &opts)?;
    // Kill right after each of the first two passes is stored.
    let mut kills = 0;
    for n in 1..=2 {
        wait_for(Duration::from_secs(180), "a pass stored", || {
            let log = edge.proc.log_text();
            (log.lines().filter_map(parse_read).count() >= n || frames_done(&log).is_some())
                .then_some(())
        })?;
        if frames_done(&edge.proc.log_text()).is_some() {
            break;
        }
        edge.proc.kill9();
        kills += 1;
        edge.proc.start()?;
    }
    wait_for(Duration::from_secs(180), "the clip to end", || {
        frames_done(&edge.proc.log_text()).map(|_| ())
    })?;
    edge.proc.stop()?;
    assert_eq!(kills, 2, "the clip ended before the kills");

    let mut plates: Vec<String> = edge
        .stored_entries()?
        .iter()
        .filter_map(|e| e.read().map(|r| r.plate.clone()))
        .collect();
    plates.sort();
    assert_eq!(
        plates,
        ["CC2881", "EMR7094", "YG9X2G"],
        "one read per pass, across the kills"
    );
    Ok(())
}
