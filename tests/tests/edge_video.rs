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
