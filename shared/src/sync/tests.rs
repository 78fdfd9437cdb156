use std::time::Duration;

use super::harness::*;
use super::*;
use crate::cert::DeviceCert;
use crate::log::{verify_log, SignedEntry};
use std::collections::BTreeMap;

use crate::types::{DeviceKind, Hash32, UnixMillis};
use crate::wire::{Frame, Lane, RefusalCode};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn sim_config() -> SyncTuning {
    SyncTuning {
        batch_entries: 64,
        window_entries: 512,
        retransmit_after: ms(600),
        backoff_min: ms(100),
        backoff_max: secs(4),
        ..SyncTuning::default()
    }
}

fn cert(pair: &Pair) -> DeviceCert {
    DeviceCert {
        name: pair.device(),
        kind: DeviceKind::Vehicle,
        key: pair.log.writer.public_key(),
        not_before: UnixMillis(0),
        not_after: UnixMillis(u64::MAX),
        serial: String::new(),
        der: Vec::new(),
    }
}

/// The hub's copy is the edge's log, entry for entry, and verifies.
fn assert_hub_copy_exact(pair: &Pair) {
    let hub: Vec<SignedEntry> = pair.hub.entries.values().map(|v| v.entry.clone()).collect();
    assert_eq!(hub.len(), pair.log.entries.len(), "entries lost");
    assert_eq!(hub, pair.log.entries, "hub copy differs from the edge log");
    let report = verify_log(
        &cert(pair),
        &hub,
        &[],
        crate::log::verify::VerifyOptions { from_start: true },
    );
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(pair.hub.progress.next_seq, hub.len() as u64);
}

fn add_reads(pair: &mut Pair, n: u64, images: bool) {
    let start = pair.log.log_len();
    for i in start..start + n {
        pair.log.append(i, images);
    }
}

#[test]
fn clean_link_uploads_everything_once() {
    let mut p = Pair::new(
        1,
        LinkModel {
            delay: ms(20),
            ..Default::default()
        },
        sim_config(),
    );
    add_reads(&mut p, 1000, false);
    assert!(p.run_until(secs(60), Pair::synced));
    assert_hub_copy_exact(&p);
    assert_eq!(p.hub.duplicates, 0);
    assert!(p.hub.refusals.is_empty());
    assert_eq!(p.stats.connects, 1);
}

#[test]
fn reads_arriving_during_sync_follow() {
    let mut p = Pair::new(
        2,
        LinkModel {
            delay: ms(30),
            ..Default::default()
        },
        sim_config(),
    );
    for round in 0..20 {
        add_reads(&mut p, 37 + round, false);
        let until = p.now + ms(200);
        p.run_until(until, |_| false);
    }
    assert!(p.run_until(p.now + secs(60), Pair::synced));
    assert_hub_copy_exact(&p);
}

#[test]
fn lossy_duplicating_reordering_link_loses_and_duplicates_nothing() {
    let link = LinkModel {
        loss: 0.2,
        duplicate: 0.1,
        delay: ms(50),
        jitter: ms(80),
        idle_timeout: secs(3),
        ..Default::default()
    };
    for seed in 0..5 {
        let mut p = Pair::new(100 + seed, link.clone(), sim_config());
        add_reads(&mut p, 1500, false);
        assert!(
            p.run_until(secs(600), Pair::synced),
            "seed {seed} did not finish"
        );
        assert_hub_copy_exact(&p);
        assert!(
            p.stats.frames_lost > 0,
            "the link must actually lose frames"
        );
        // Only gaps (from reordering) are refused; never a fork or forgery.
        assert!(p.hub.refusals.iter().all(|r| r.code == RefusalCode::Gap));
    }
}

#[test]
fn bursty_thirty_percent_loss_completes() {
    // Gilbert–Elliott with a stationary bad share of 0.3 and mean burst of 5.
    let link = LinkModel {
        burst: Some((0.0857, 0.2)),
        delay: ms(40),
        idle_timeout: secs(3),
        ..Default::default()
    };
    let mut p = Pair::new(7, link, sim_config());
    add_reads(&mut p, 2000, true);
    assert!(p.run_until(secs(900), |p| p.synced() && p.log.image_queue.is_empty()));
    assert_hub_copy_exact(&p);
    let lost = p.stats.frames_lost as f64 / p.stats.frames_sent as f64;
    assert!(lost > 0.15, "loss was only {lost}");
    assert_eq!(p.hub.images.len(), 2000);
}

#[test]
fn five_second_outage_reconnects_with_backoff_and_completes() {
    let link = LinkModel {
        delay: ms(25),
        outages: vec![(secs(1), secs(6))],
        idle_timeout: secs(2),
        ..Default::default()
    };
    let mut cfg = sim_config();
    cfg.batch_entries = 16;
    cfg.window_entries = 64;
    let mut p = Pair::new(9, link, cfg);
    add_reads(&mut p, 3000, false);
    assert!(p.run_until(secs(120), Pair::synced));
    assert_hub_copy_exact(&p);
    assert!(
        p.stats.connects >= 2,
        "the outage must have dropped the connection"
    );
    assert!(
        p.stats.failed_connects >= 1,
        "reconnects were tried during the outage"
    );
    assert!(p.now > secs(6));
}

#[test]
fn hub_restart_resumes_from_its_receipt() {
    let mut p = Pair::new(
        3,
        LinkModel {
            delay: ms(10),
            ..Default::default()
        },
        sim_config(),
    );
    add_reads(&mut p, 500, false);
    p.run_until(secs(60), |p| p.hub.progress.next_seq >= 200);
    // The connection drops (hub killed); the hub keeps what it committed.
    p.session = None;
    p.edge.link_down(p.now);
    assert!(p.run_until(p.now + secs(60), Pair::synced));
    assert_hub_copy_exact(&p);
}

/// An entry damaged in the node's own store is refused by the hub, fails
/// the node's own check too, and becomes a signed loss: the reads after it
/// still reach the hub, and the verifier reports a loss, not a forgery.
fn damaged_entry_becomes_a_loss(p: &mut Pair, damaged: u64, code: RefusalCode) {
    p.run_until(secs(60), Pair::synced);
    assert!(p.synced(), "the reads after the damaged entry must flow");
    assert!(p
        .hub
        .refusals
        .iter()
        .any(|r| r.code == code && r.seq == Some(damaged)));
    assert!(
        !p.hub.entries.contains_key(&damaged),
        "the damaged entry is never stored"
    );
    assert!(p
        .edge_events
        .iter()
        .any(|e| matches!(e, EdgeEvent::LocalLoss { seq } if *seq == damaged)));
    assert!(!p
        .edge_events
        .iter()
        .any(|e| matches!(e, EdgeEvent::Refused(r) if r.code.is_permanent())));
    let hub: Vec<SignedEntry> = p.hub.entries.values().map(|v| v.entry.clone()).collect();
    assert_eq!(hub.len(), p.log.entries.len() - 1);
    let report = verify_log(
        &cert(p),
        &hub,
        &[],
        crate::log::verify::VerifyOptions { from_start: true },
    );
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(report.losses.len(), 1);
    assert_eq!(report.losses[0].first, damaged);
}

#[test]
fn an_entry_edited_in_the_node_store_becomes_a_signed_loss_and_the_rest_flows() {
    let mut p = Pair::new(
        4,
        LinkModel {
            delay: ms(10),
            ..Default::default()
        },
        sim_config(),
    );
    add_reads(&mut p, 300, false);
    if let Some(b) = p.log.entries[150].body.as_mut() {
        b.content.plate = "FORGED1".into();
        b.content.char_confidence = vec![1; 7];
    }
    damaged_entry_becomes_a_loss(&mut p, 150, RefusalCode::Edited);
}

#[test]
fn an_entry_signed_by_another_key_becomes_a_signed_loss_and_the_rest_flows() {
    let mut p = Pair::new(5, LinkModel::default(), sim_config());
    add_reads(&mut p, 100, false);
    p.log.entries[40].signature.0[0] ^= 1;
    damaged_entry_becomes_a_loss(&mut p, 40, RefusalCode::BadSignature);
}

#[test]
fn an_unreadable_entry_becomes_a_signed_loss_and_the_rest_flows() {
    let mut p = Pair::new(13, LinkModel::default(), sim_config());
    add_reads(&mut p, 100, false);
    // Bytes the store cannot decode: the edge finds it before sending.
    p.log.entries[0].header.format = 99;
    p.run_until(secs(60), Pair::synced);
    assert!(p.synced());
    assert!(p.hub.refusals.is_empty(), "{:?}", p.hub.refusals);
    let hub: Vec<SignedEntry> = p.hub.entries.values().map(|v| v.entry.clone()).collect();
    let report = verify_log(
        &cert(&p),
        &hub,
        &[],
        crate::log::verify::VerifyOptions { from_start: true },
    );
    assert!(report.authentic(), "{:?}", report.faults);
    assert_eq!(report.losses.len(), 1);
    assert_eq!((report.losses[0].first, report.losses[0].last), (0, 0));
}

/// A refusal of an entry the node's own check finds intact is not turned
/// into a loss: the hub's word alone does not make the node skip a read.
#[test]
fn an_intact_entry_refused_by_the_hub_still_stops_the_node() {
    let mut p = Pair::new(14, LinkModel::default(), sim_config());
    add_reads(&mut p, 50, false);
    assert!(p.run_until(secs(10), Pair::synced));
    add_reads(&mut p, 1, false);
    let r = crate::wire::Refusal {
        code: RefusalCode::Edited,
        seq: Some(50),
        detail: "test".into(),
    };
    p.edge.handle_frame(Frame::Refused(r), p.now, &p.log);
    let mut ev = Vec::new();
    while let Some(e) = p.edge.poll_event() {
        ev.push(e);
    }
    assert!(ev.iter().all(|e| !matches!(e, EdgeEvent::LocalLoss { .. })));
    assert!(matches!(p.edge.state(), LinkState::Refused { .. }));
}

/// The node's log is replaced by another one signed with the same key (a
/// wiped store, or a second device with the same certificate): `len`
/// fresh reads, and an edge core that starts from nothing.
fn replace_node_log(p: &mut Pair, len: u64) {
    let device = p.device();
    p.log.writer =
        crate::log::LogWriter::new(crate::crypto::SecretKey::from_bytes(&[11; 32]), device);
    p.log.entries.clear();
    p.log.image_queue.clear();
    add_reads(p, len, false);
    p.edge = EdgeSync::new(p.device(), sim_config(), 0, 1, deployment().anchor.clone());
    p.session = None;
    p.edge_events.clear();
}

fn conflicts(p: &Pair) -> usize {
    p.edge_events
        .iter()
        .filter(|e| matches!(e, EdgeEvent::IdentityConflict(_)))
        .count()
}

#[test]
fn a_wiped_store_is_an_identity_conflict_and_uploads_stop() {
    let mut p = Pair::new(6, LinkModel::default(), sim_config());
    add_reads(&mut p, 100, false);
    assert!(p.run_until(secs(30), Pair::synced));
    let held: Vec<Hash32> = p.hub.entries.values().map(|v| v.hash).collect();
    replace_node_log(&mut p, 20);
    p.run_until(p.now + secs(30), |_| false);
    assert!(
        conflicts(&p) > 0,
        "the edge must see the hub's receipt is not its log"
    );
    assert!(matches!(p.edge.state(), LinkState::Conflict { .. }));
    assert_eq!(
        p.edge.acked(),
        0,
        "a receipt for another log is never taken"
    );
    assert_eq!(p.edge.in_flight(), 0);
    assert!(
        p.hub.refusals.is_empty(),
        "nothing was uploaded: {:?}",
        p.hub.refusals
    );
    let now_held: Vec<Hash32> = p.hub.entries.values().map(|v| v.hash).collect();
    assert_eq!(now_held, held, "the hub's copy is untouched");
}

#[test]
fn a_second_device_with_the_same_identity_is_a_conflict() {
    let mut p = Pair::new(7, LinkModel::default(), sim_config());
    add_reads(&mut p, 100, false);
    assert!(p.run_until(secs(30), Pair::synced));
    // Longer than what the hub holds: only the head tells them apart.
    replace_node_log(&mut p, 150);
    p.run_until(p.now + secs(30), |_| false);
    assert!(conflicts(&p) > 0);
    assert!(matches!(p.edge.state(), LinkState::Conflict { .. }));
    assert!(
        p.hub.refusals.is_empty(),
        "the conflict is seen before anything is sent: {:?}",
        p.hub.refusals
    );
    assert_eq!(p.hub.progress.next_seq, 100);
}

#[test]
fn a_receipt_going_backwards_with_a_matching_head_resends_from_there() {
    let mut p = Pair::new(9, LinkModel::default(), sim_config());
    add_reads(&mut p, 300, false);
    assert!(p.run_until(secs(30), Pair::synced));
    // The hub is restored from a copy that held 120 entries.
    let keep: BTreeMap<u64, Verified> = p
        .hub
        .entries
        .range(..120)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    p.hub.progress = Progress {
        next_seq: 120,
        head: keep[&119].hash,
    };
    p.hub.entries = keep;
    p.hub.checkpoint = None;
    p.session = None;
    p.edge.link_down(p.now);
    assert!(p.run_until(p.now + secs(60), Pair::synced));
    assert!(p.edge_events.iter().any(|e| matches!(
        e,
        EdgeEvent::HubBehind {
            had: 300,
            now_holds: 120
        }
    )));
    assert_eq!(conflicts(&p), 0);
    assert_hub_copy_exact(&p);
}

#[test]
fn replayed_frames_are_harmless() {
    let link = LinkModel {
        duplicate: 0.9,
        delay: ms(10),
        jitter: ms(5),
        ..Default::default()
    };
    let mut p = Pair::new(8, link, sim_config());
    add_reads(&mut p, 800, false);
    assert!(p.run_until(secs(120), Pair::synced));
    assert_hub_copy_exact(&p);
    // A stale receipt replayed at the edge moves nothing backwards.
    let stale = p.edge_events.iter().find_map(|e| match e {
        EdgeEvent::Acked(r) if r.receipt.next_seq < 100 => Some(r.clone()),
        _ => None,
    });
    if let Some(r) = stale {
        p.edge.handle_frame(Frame::Ack(r), p.now, &p.log);
        assert_eq!(p.edge.acked(), 800);
    }
}

#[test]
fn receipts_not_signed_by_the_hub_are_ignored() {
    // Another deployment's receipt key; and another key under this
    // deployment's receipt certificate.
    let theirs = crate::signer::dev::Deployment::new().expect("deployment");
    let impostor = theirs.key("hub").expect("key");
    let wrong_key = crate::signer::HubKey::unchecked(
        crate::crypto::SecretKey::from_bytes(&[99; 32]),
        Pair::new(10, LinkModel::default(), sim_config())
            .receipt_key
            .cert_der(),
    )
    .expect("a certificate");
    for key in [impostor, wrong_key] {
        let mut p = Pair::new(10, LinkModel::default(), sim_config());
        add_reads(&mut p, 50, false);
        p.receipt_key = std::sync::Arc::new(key);
        p.run_until(secs(5), |_| false);
        assert_eq!(
            p.edge.acked(),
            0,
            "a receipt from an impostor must not count"
        );
        assert!(p
            .edge_events
            .iter()
            .any(|e| matches!(e, EdgeEvent::Protocol(_))));
    }
}

/// Receipts signed with a key of the deployment that is not certified for
/// receipts — the hub's TLS key, its policy key — are not receipts: the
/// edge refuses the certificate the welcome names and counts nothing.
#[test]
fn receipts_signed_with_a_key_of_another_purpose_are_ignored() {
    let d = deployment();
    let (tls_key, tls_der) = d.tls().expect("tls");
    let (policy_key, policy_der) = d
        .secret_of(crate::cert::KeyPurpose::Policy)
        .expect("policy key");
    for (key, der) in [(tls_key, tls_der), (policy_key, policy_der)] {
        let mut p = Pair::new(12, LinkModel::default(), sim_config());
        add_reads(&mut p, 50, false);
        p.receipt_key = std::sync::Arc::new(
            crate::signer::HubKey::unchecked(key, &der).expect("a certificate"),
        );
        p.run_until(secs(5), |_| false);
        assert_eq!(
            p.edge.acked(),
            0,
            "a receipt under the wrong purpose counted"
        );
        assert!(
            p.edge_events.iter().any(
                |e| matches!(e, EdgeEvent::Protocol(why) if why.contains("receipt certificate"))
            ),
            "{:?}",
            p.edge_events
        );
    }
    // The deployment's receipt key is accepted.
    let mut p = Pair::new(12, LinkModel::default(), sim_config());
    add_reads(&mut p, 50, false);
    assert!(p.run_until(secs(30), |p| p.synced()));
    assert_eq!(p.edge.acked(), 50);
}

#[test]
fn metered_link_holds_images_until_unmetered() {
    let mut cfg = sim_config();
    cfg.metered = true;
    let mut p = Pair::new(
        11,
        LinkModel {
            delay: ms(10),
            ..Default::default()
        },
        cfg,
    );
    add_reads(&mut p, 200, true);
    assert!(p.run_until(secs(30), Pair::synced));
    p.run_until(p.now + secs(5), |_| false);
    assert!(p.hub.images.is_empty(), "images crossed a metered link");
    p.edge.set_metered(false);
    assert!(p.run_until(p.now + secs(60), |p| p.log.image_queue.is_empty()));
    assert_eq!(p.hub.images.len(), 200);
}

#[test]
fn entries_go_before_images_and_images_follow_their_entries() {
    let mut cfg = sim_config();
    cfg.metered = true;
    let mut p = Pair::new(12, LinkModel::default(), cfg);
    add_reads(&mut p, 10, true);
    assert!(p.run_until(secs(5), Pair::synced));
    p.edge.set_metered(false);
    add_reads(&mut p, 64, true);
    let mut sent = Vec::new();
    while let Some(o) = p.edge.poll_transmit(p.now, &p.log) {
        sent.push(o);
    }
    assert_eq!(sent.first().map(|o| o.lane), Some(Lane::Entries));
    let images: Vec<u64> = sent
        .iter()
        .filter_map(|o| match &o.frame {
            Frame::Image(i) => Some(i.seq),
            _ => None,
        })
        .collect();
    assert!(!images.is_empty());
    assert!(
        images.iter().all(|&s| s < 10),
        "an image went before its entry was acknowledged"
    );
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
    let cfg = SyncTuning {
        backoff_min: ms(100),
        backoff_max: secs(10),
        ..SyncTuning::default()
    };
    let anchor = || deployment().anchor.clone();
    let mut e = EdgeSync::new(
        crate::types::DeviceId::new("v").expect("valid"),
        cfg,
        0,
        42,
        anchor(),
    );
    let mut now = Duration::ZERO;
    let mut delays = Vec::new();
    for _ in 0..12 {
        e.link_down(now);
        let LinkState::Down { retry_at } = e.state() else {
            panic!("down")
        };
        delays.push(retry_at - now);
        now = retry_at;
    }
    for (i, d) in delays.iter().enumerate() {
        let full = (ms(100) * (1 << i.min(20))).min(secs(10));
        assert!(
            *d >= full / 2 && *d <= full,
            "attempt {i}: {d:?} not in [{:?}, {full:?}]",
            full / 2
        );
    }
    assert!(delays.windows(2).take(5).all(|w| w[1] > w[0] / 2));
    assert!(delays.iter().skip(8).all(|d| *d <= secs(10)));
    // Different seeds jitter differently.
    let mut other = EdgeSync::new(
        crate::types::DeviceId::new("v").expect("valid"),
        SyncTuning::default(),
        0,
        43,
        anchor(),
    );
    other.link_down(Duration::ZERO);
    other.link_down(Duration::ZERO);
    other.link_down(Duration::ZERO);
    let mut same = EdgeSync::new(
        crate::types::DeviceId::new("v").expect("valid"),
        SyncTuning::default(),
        0,
        42,
        anchor(),
    );
    same.link_down(Duration::ZERO);
    same.link_down(Duration::ZERO);
    same.link_down(Duration::ZERO);
    assert_ne!(other.state(), same.state());
}

#[test]
fn runs_are_deterministic() {
    let link = LinkModel {
        loss: 0.1,
        duplicate: 0.05,
        delay: ms(30),
        jitter: ms(30),
        idle_timeout: secs(3),
        outages: vec![(secs(2), secs(4))],
        ..Default::default()
    };
    let run = || {
        let mut p = Pair::new(77, link.clone(), sim_config());
        add_reads(&mut p, 700, false);
        assert!(p.run_until(secs(300), Pair::synced));
        (p.now, p.stats.clone(), p.hub.duplicates)
    };
    assert_eq!(run(), run());
}

#[test]
fn a_hub_restored_from_a_backup_gets_entries_and_images_back() {
    let mut p = Pair::new(12, LinkModel::default(), sim_config());
    add_reads(&mut p, 400, true);
    assert!(p.run_until(secs(120), |p| p.synced() && p.log.image_queue.is_empty()));
    assert_eq!(p.hub.images.len(), 400);
    // The backup was taken when the hub held 150 entries and the images
    // of only the first 100 of them.
    let keep: BTreeMap<u64, Verified> = p
        .hub
        .entries
        .range(..150)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let images_kept: BTreeMap<Hash32, Vec<u8>> = keep
        .range(..100)
        .filter_map(|(_, v)| v.entry.read().map(|c| c.crop_hash))
        .map(|h| (h, p.hub.images[&h].clone()))
        .collect();
    p.hub.progress = Progress {
        next_seq: 150,
        head: keep[&149].hash,
    };
    p.hub.entries = keep;
    p.hub.images = images_kept;
    p.hub.checkpoint = None;
    p.session = None;
    p.edge.link_down(p.now);
    let all_back = |p: &Pair| {
        p.synced()
            && p.log.entries.iter().all(|e| {
                e.read()
                    .is_some_and(|c| p.hub.images.contains_key(&c.crop_hash))
            })
    };
    assert!(
        p.run_until(p.now + secs(120), all_back),
        "the hub holds {} entries and {} images",
        p.hub.entries.len(),
        p.hub.images.len()
    );
    assert_hub_copy_exact(&p);
}

/// Images of 8 KiB over a 600 ms round trip with no loss.
fn long_rtt_pair(seed: u64, cwnd: Option<u64>, cfg: SyncTuning) -> Pair {
    let mut p = Pair::new(
        seed,
        LinkModel {
            delay: ms(300),
            ..Default::default()
        },
        cfg,
    );
    p.log.image_size = 8 * 1024;
    if let Some(c) = cwnd {
        p.edge.set_congestion_window(c);
    }
    p
}

#[test]
fn long_rtt_keeps_the_image_window_full_and_sends_each_image_once() {
    let cfg = SyncTuning {
        retransmit_after: secs(5),
        ..sim_config()
    };
    // What quinn reports for 1 Mbit/s at 600 ms RTT: about 75 kB.
    let mut p = long_rtt_pair(31, Some(75_000), cfg);
    add_reads(&mut p, 300, true);
    let (mut most, mut most_bytes) = (0, 0);
    assert!(p.run_until(secs(120), |p| {
        let (n, b) = p.edge.images_in_flight();
        most = most.max(n);
        most_bytes = most_bytes.max(b);
        p.synced() && p.log.image_queue.is_empty()
    }));
    assert_eq!(p.hub.images.len(), 300, "images lost");
    assert!(
        most > 4,
        "only {most} images in flight over a 600 ms round trip"
    );
    let window = p.edge.image_window();
    assert_eq!(window, 150_000);
    assert!(
        most_bytes <= window + 8 * 1024,
        "{most_bytes} image bytes in flight past a {window}-byte window"
    );
    let resent: Vec<_> = p.stats.image_sends.values().filter(|&&n| n != 1).collect();
    assert!(resent.is_empty(), "images sent more than once: {resent:?}");
    assert_eq!(p.stats.image_sends.len(), 300);
}

#[test]
fn image_window_is_capped_in_bytes_and_one_large_image_still_moves() {
    let cfg = SyncTuning {
        retransmit_after: secs(5),
        window_image_bytes_min: 4 * 1024,
        window_image_bytes_max: 32 * 1024,
        ..sim_config()
    };
    // A congestion window far past the cap.
    let mut p = long_rtt_pair(32, Some(1 << 30), cfg);
    add_reads(&mut p, 40, true);
    let mut most_bytes = 0;
    assert!(p.run_until(secs(120), |p| {
        most_bytes = most_bytes.max(p.edge.images_in_flight().1);
        p.synced() && p.log.image_queue.is_empty()
    }));
    assert_eq!(p.edge.image_window(), 32 * 1024);
    assert!(most_bytes <= 32 * 1024 + 8 * 1024, "{most_bytes} in flight");
    assert_eq!(p.hub.images.len(), 40);

    // An image larger than the whole window goes alone.
    let cfg = SyncTuning {
        retransmit_after: secs(5),
        window_image_bytes_min: 1024,
        window_image_bytes_max: 1024,
        ..sim_config()
    };
    let mut p = long_rtt_pair(33, None, cfg);
    add_reads(&mut p, 5, true);
    let mut most = 0;
    assert!(p.run_until(secs(60), |p| {
        most = most.max(p.edge.images_in_flight().0);
        p.synced() && p.log.image_queue.is_empty()
    }));
    assert_eq!(most, 1);
    assert_eq!(p.hub.images.len(), 5);
}

#[test]
fn entries_overtake_images_in_flight() {
    let cfg = SyncTuning {
        retransmit_after: secs(5),
        ..sim_config()
    };
    let mut p = long_rtt_pair(34, Some(1 << 20), cfg);
    add_reads(&mut p, 50, true);
    // Entries acknowledged, images under way.
    assert!(p.run_until(secs(30), |p| p.synced() && p.edge.images_in_flight().0 > 4));
    add_reads(&mut p, 10, true);
    let first = p.edge.poll_transmit(p.now, &p.log);
    assert_eq!(first.map(|o| o.lane), Some(Lane::Entries));
}

#[test]
fn images_fill_a_slow_long_link_without_needless_resends() {
    // 1 Mbit/s, 600 ms RTT: 600 plate crops of 8 KiB need 39 s of link.
    let cfg = SyncTuning {
        // Shorter than an image may wait behind a full window.
        retransmit_after: secs(2),
        ..sim_config()
    };
    let mut p = Pair::new(
        35,
        LinkModel {
            delay: ms(300),
            rate_bps: Some(1_000_000),
            ..Default::default()
        },
        cfg,
    );
    p.log.image_size = 8 * 1024;
    // About what quinn's BBR reports on such a link: two BDPs.
    p.edge.set_congestion_window(150_000);
    add_reads(&mut p, 600, true);
    assert!(p.run_until(secs(300), |p| p.synced() && p.log.image_queue.is_empty()));
    assert_eq!(p.hub.images.len(), 600);
    let resent = p.stats.image_sends.values().filter(|&&n| n > 1).count();
    assert_eq!(resent, 0, "images resent while the link was busy");
    let image_bits = 600.0 * 8.0 * 1024.0 * 8.0;
    let share = image_bits / 1e6 / p.now.as_secs_f64();
    assert!(share >= 0.8, "images used {share:.2} of the link");
}

// ---- Policy push (control lane) ----

fn policy(
    version: u64,
    key: &crate::signer::HubKey<crate::signer::PolicySigning>,
) -> crate::control::SignedPolicy {
    crate::control::policy::tests::sample(version)
        .sign(key)
        .expect("valid policy")
}

#[test]
fn hub_pushes_its_policy_on_connect_and_learns_what_the_edge_enforces() {
    let mut pair = Pair::new(1, LinkModel::default(), sim_config());
    let p1 = policy(1, &pair.policy_key.clone());
    pair.publish_policy(&p1);
    add_reads(&mut pair, 5, false);
    assert!(pair.run_until(secs(30), |p| p.synced() && p.node_policy == Some(1)));
    assert_eq!(pair.edge_policy.as_ref().map(|p| p.version()), Some(1));
    assert_eq!(pair.edge.policy_version(), 1);
    assert!(pair.edge_refreshed.is_some());
    assert_hub_copy_exact(&pair);
}

#[test]
fn a_newer_policy_reaches_a_connected_edge_and_replaces_the_old() {
    let mut pair = Pair::new(2, LinkModel::default(), sim_config());
    let key = pair.policy_key.clone();
    pair.publish_policy(&policy(1, &key));
    assert!(pair.run_until(secs(30), |p| p.node_policy == Some(1)));
    let mut p2 = crate::control::policy::tests::sample(2);
    p2.officers.clear();
    let p2 = p2.sign(&key).expect("valid");
    pair.publish_policy(&p2);
    assert!(pair.run_until(secs(60), |p| p.node_policy == Some(2)));
    let held = pair.edge_policy.as_ref().expect("held");
    assert_eq!(held.version(), 2);
    assert!(
        held.policy().officer("jdoe").is_none(),
        "the removed officer is gone"
    );
}

#[test]
fn an_equal_version_refreshes_without_resending_the_document() {
    let mut pair = Pair::new(3, LinkModel::default(), sim_config());
    let key = pair.policy_key.clone();
    pair.publish_policy(&policy(4, &key));
    assert!(pair.run_until(secs(30), |p| p.node_policy == Some(4)));
    let first = pair.edge_refreshed.expect("refreshed");
    // Reconnect later: the hub confirms version 4 without sending it again.
    pair.edge.link_down(pair.now);
    pair.session = None;
    let before = pair.edge_events.len();
    let start = pair.now;
    assert!(pair.run_until(start + secs(60), |p| {
        p.edge_events[before..]
            .iter()
            .any(|e| matches!(e, EdgeEvent::PolicyRefreshed { version: 4 }))
    }));
    assert!(pair.edge_refreshed.expect("refreshed") > first);
    assert!(!pair.edge_events[before..]
        .iter()
        .any(|e| matches!(e, EdgeEvent::Policy(_))));
}

#[test]
fn an_older_policy_is_not_applied() {
    let mut pair = Pair::new(4, LinkModel::default(), sim_config());
    let key = pair.policy_key.clone();
    pair.publish_policy(&policy(5, &key));
    assert!(pair.run_until(secs(30), |p| p.node_policy == Some(5)));
    // The hub restored from a backup with version 3: the edge keeps 5.
    pair.hub_policy = Some((3, std::sync::Arc::new(policy(3, &key).encode())));
    pair.edge.link_down(pair.now);
    pair.session = None;
    let start = pair.now;
    assert!(pair.run_until(start + secs(60), |p| p.session.is_some()
        && p.edge.state() == LinkState::Ready
        && p.node_policy == Some(5)));
    assert_eq!(pair.edge_policy.as_ref().map(|p| p.version()), Some(5));
    assert_eq!(pair.edge.policy_version(), 5);
    // Asked, the edge showed the hub what it signed: version 5, which
    // verifies under the hub's key (the hub's next version goes past it).
    assert!(pair.run_until(start + secs(90), |p| p.shown_policy.is_some()));
    let shown = crate::control::SignedPolicy::decode_verified(
        pair.shown_policy.as_deref().expect("shown"),
        &deployment().anchor,
    )
    .expect("the hub's own signature");
    assert_eq!(shown.version(), 5);
    // So the version the hub makes next reaches the edge.
    pair.publish_policy(&policy(6, &key));
    assert!(pair.run_until(pair.now + secs(60), |p| p.node_policy == Some(6)));
    assert_eq!(pair.edge.policy_version(), 6);
}

#[test]
fn a_hub_behind_on_a_list_is_shown_only_the_headers_it_lacks_and_only_once_asked() {
    let mut pair = Pair::new(41, LinkModel::default(), sim_config());
    pair.publish_list("ncic", 5);
    pair.publish_list("ca-svs", 2);
    assert!(
        pair.run_until(secs(30), |p| p.edge_lists.get("ncic") == Some(&5)
            && p.edge_lists.get("ca-svs") == Some(&2))
    );
    assert!(
        pair.shown_lists.is_empty(),
        "nothing asked while the hub is current"
    );
    // Restored from a backup: the hub's ncic is back at 3.
    pair.hub_lists.insert("ncic".into(), 3);
    pair.edge.link_down(pair.now);
    pair.session = None;
    let start = pair.now;
    assert!(pair.run_until(start + secs(60), |p| !p.shown_lists.is_empty()));
    // A while longer: nothing else is shown (ca-svs is current at the hub).
    let _ = pair.run_until(pair.now + secs(5), |_| false);
    assert_eq!(pair.shown_lists, vec![b"header ncic 5".to_vec()]);
    assert!(pair.shown_policy.is_none(), "no policy was asked for");
    assert_eq!(
        pair.edge_lists.get("ncic"),
        Some(&5),
        "the edge keeps its newer list"
    );

    // Shown without being asked, a header or a policy is refused.
    let mut s = HubSession::new(
        pair.device(),
        crate::crypto::SecretKey::from_bytes(&[11; 32]).public(),
        pair.receipt_key.clone(),
        Progress::default(),
    );
    for f in [
        Frame::HeldList {
            header: b"header ncic 99".to_vec(),
        },
        Frame::HeldPolicy {
            policy: vec![1, 2, 3],
        },
    ] {
        let outs = s.handle_frame(f, UnixMillis(1));
        assert!(
            outs.iter()
                .any(|o| matches!(o, HubOutput::Refused(r) if r.code == RefusalCode::Malformed)),
            "{outs:?}"
        );
        assert!(!outs.iter().any(|o| matches!(
            o,
            HubOutput::NodeHeldList { .. } | HubOutput::NodeHeldPolicy { .. }
        )));
    }
}

#[test]
fn a_forged_policy_is_refused_and_not_applied() {
    let mut pair = Pair::new(5, LinkModel::default(), sim_config());
    let key = pair.policy_key.clone();
    pair.publish_policy(&policy(1, &key));
    assert!(pair.run_until(secs(30), |p| p.node_policy == Some(1)));
    // Someone else's key signs version 9 and it reaches the edge: under
    // this deployment's policy certificate, or as the hub's TLS key (a key
    // of the deployment, not certified for the policy).
    let forger = crate::signer::HubKey::unchecked(
        crate::crypto::SecretKey::from_bytes(&[99; 32]),
        key.cert_der(),
    )
    .expect("a certificate");
    let (tls_key, tls_der) = deployment().tls().expect("tls");
    let tls = crate::signer::HubKey::unchecked(tls_key, &tls_der).expect("a certificate");
    for (forger, why) in [(forger, "signature"), (tls, "server authentication")] {
        let forged = policy(9, &forger);
        pair.edge.handle_frame(
            Frame::Policy {
                policy: forged.encode(),
            },
            pair.now,
            &pair.log,
        );
        let mut refused = false;
        while let Some(ev) = pair.edge.poll_event() {
            assert!(!matches!(ev, EdgeEvent::Policy(_)), "forged policy offered");
            refused |= matches!(ev, EdgeEvent::PolicyRefused(ref w) if w.contains(why));
        }
        assert!(refused, "{why}");
        assert_eq!(pair.edge.policy_version(), 1);
    }
    // Garbage bytes are refused too, without a panic.
    pair.edge.handle_frame(
        Frame::Policy {
            policy: vec![0xff; 40],
        },
        pair.now,
        &pair.log,
    );
    assert!(matches!(
        pair.edge.poll_event(),
        Some(EdgeEvent::PolicyRefused(_))
    ));
}

#[test]
fn policy_travels_on_the_control_lane_and_the_edge_reports_on_it() {
    let f = Frame::Policy {
        policy: policy(
            1,
            &Pair::new(6, LinkModel::default(), sim_config()).policy_key,
        )
        .encode(),
    };
    assert_eq!(f.lane(), Lane::Control);
    assert_eq!(Frame::PolicyApplied { version: 1 }.lane(), Lane::Control);
    // A hub-to-node frame is refused by the hub.
    let mut pair = Pair::new(6, LinkModel::default(), sim_config());
    assert!(pair.run_until(secs(10), |p| p.edge.state() == LinkState::Ready));
    let unix = UnixMillis(1_700_000_000_000);
    let outs = pair
        .session
        .as_mut()
        .expect("connected")
        .handle_frame(f, unix);
    assert!(outs
        .iter()
        .any(|o| matches!(o, HubOutput::Refused(r) if r.code == RefusalCode::Malformed)));
}

#[test]
fn a_long_connection_keeps_the_policy_refreshed_and_a_lost_push_is_repaired() {
    let config = SyncTuning {
        policy_refresh: secs(5),
        ..sim_config()
    };
    let mut pair = Pair::new(7, LinkModel::default(), config);
    let key = pair.policy_key.clone();
    pair.publish_policy(&policy(1, &key));
    assert!(pair.run_until(secs(30), |p| p.node_policy == Some(1)));
    let first = pair.edge_refreshed.expect("refreshed");
    let start = pair.now;
    assert!(pair.run_until(start + secs(60), |p| p
        .edge_refreshed
        .is_some_and(|t| t >= first + secs(30))));
    assert_eq!(pair.stats.connects, 1, "refreshed without reconnecting");

    // A newer version whose push is lost on the way (the session never
    // sends it): the next report brings it.
    pair.hub_policy = Some((2, std::sync::Arc::new(policy(2, &key).encode())));
    if let Some(s) = pair.session.as_mut() {
        let _lost = s.set_policy(2, std::sync::Arc::new(policy(2, &key).encode()));
    }
    let start = pair.now;
    assert!(pair.run_until(start + secs(60), |p| p.node_policy == Some(2)));
    assert_eq!(pair.edge.policy_version(), 2);
    assert_eq!(pair.stats.connects, 1);
}

fn a_hold(id: &str, on: &str) -> crate::control::holds::Hold {
    crate::control::holds::Hold {
        id: id.into(),
        case: "24-001".into(),
        reason: "investigation".into(),
        placed_by: "det.lee".into(),
        agency: "CA0349400".into(),
        placed_at: UnixMillis(1),
        placed_on: on.into(),
        scope: crate::control::holds::HoldScope {
            plates: vec!["7ABC123".into()],
            ..Default::default()
        },
        released: None,
    }
}

fn ids(holds: &[crate::control::holds::Hold]) -> Vec<String> {
    holds.iter().map(|h| h.id.clone()).collect()
}

#[test]
fn holds_travel_both_ways_on_connect() {
    let mut pair = Pair::new(21, LinkModel::default(), sim_config());
    pair.hub_holds.add(a_hold("from-hub", "hub")).expect("add");
    pair.edge_holds
        .add(a_hold("from-edge", "veh-1"))
        .expect("add");
    pair.edge_holds_changed();
    add_reads(&mut pair, 3, false);
    assert!(pair.run_until(secs(30), |p| p.synced()
        && p.hub_holds.holds().len() == 2
        && p.edge_holds.holds().len() == 2));
    assert_eq!(pair.hub_holds.holds(), pair.edge_holds.holds());
    assert!(pair.holds_refreshed.is_some());
}

#[test]
fn a_hold_placed_offline_and_another_released_meanwhile_both_survive() {
    let mut pair = Pair::new(22, LinkModel::default(), sim_config());
    pair.hub_holds.add(a_hold("other", "hub")).expect("add");
    assert!(pair.run_until(secs(30), |p| p.edge_holds.holds().len() == 1));
    // The link drops; the edge places a hold, the hub releases the other.
    pair.edge.link_down(pair.now);
    pair.session = None;
    pair.edge_holds.add(a_hold("mine", "veh-1")).expect("add");
    pair.edge_holds_changed();
    let release = crate::control::holds::Release {
        by: "sgt.ray".into(),
        at: UnixMillis(2),
        reason: "closed".into(),
    };
    pair.hub_holds.release("other", release).expect("release");
    pair.hub_holds_changed();
    let start = pair.now;
    assert!(pair.run_until(start + secs(60), |p| {
        p.hub_holds.holds().len() == 2 && p.hub_holds.holds() == p.edge_holds.holds()
    }));
    assert_eq!(ids(&pair.edge_holds.active()), vec!["mine".to_string()]);
    assert_eq!(ids(&pair.hub_holds.active()), vec!["mine".to_string()]);
}

#[test]
fn a_hub_change_reaches_a_connected_edge_and_holds_before_hello_are_refused() {
    let mut pair = Pair::new(23, LinkModel::default(), sim_config());
    assert!(pair.run_until(secs(30), |p| p.edge.state() == LinkState::Ready));
    pair.hub_holds.add(a_hold("late", "hub")).expect("add");
    pair.hub_holds_changed();
    let start = pair.now;
    assert!(pair.run_until(start + secs(30), |p| p.edge_holds.holds().len() == 1));
    // A session that has not heard hello refuses a holds frame.
    let mut fresh = HubSession::new(
        pair.device(),
        crate::crypto::SecretKey::from_bytes(&[11; 32]).public(),
        pair.receipt_key.clone(),
        pair.hub.progress,
    );
    let out = fresh.handle_frame(Frame::Holds { doc: Vec::new() }, UnixMillis(5));
    assert!(out.iter().any(|o| matches!(o, HubOutput::Refused(_))));
}

fn local_rules() -> crate::control::policy::HotlistPolicy {
    crate::control::policy::HotlistPolicy::default()
}

fn local_fields(plate: &str) -> crate::hotlist::local::EntryFields {
    crate::hotlist::local::EntryFields {
        plate: Some(plate.into()),
        reason: Some("shooting suspect".into()),
        ..Default::default()
    }
}

fn lists_link() -> LinkModel {
    LinkModel {
        delay: ms(20),
        idle_timeout: secs(2),
        ..Default::default()
    }
}

#[test]
fn local_entries_travel_both_ways_and_a_hub_removal_beats_an_offline_edit() {
    use super::harness::LOCAL_ENTRIES_NOW as NOW;
    let mut pair = Pair::new(24, LinkModel::default(), sim_config());
    pair.hub_local
        .add(
            "hub-1",
            local_fields("7AB*"),
            "op.kim",
            "CA",
            &local_rules(),
            NOW,
        )
        .expect("add");
    pair.edge_local
        .add(
            "car-1",
            local_fields("5XY?12"),
            "ofc.ray",
            "CA",
            &local_rules(),
            NOW,
        )
        .expect("add");
    pair.edge_local_changed();
    add_reads(&mut pair, 3, false);
    assert!(pair.run_until(secs(30), |p| p.synced()
        && p.hub_local.entries().len() == 2
        && p.edge_local.entries().len() == 2));
    assert_eq!(pair.hub_local.entries(), pair.edge_local.entries());
    // The link drops; the edge edits hub-1 while the hub removes it.
    pair.edge.link_down(pair.now);
    pair.session = None;
    let edit = crate::hotlist::local::EntryFields {
        colour: Some("red".into()),
        ..Default::default()
    };
    pair.edge_local
        .edit("hub-1", edit, "ofc.ray", &local_rules(), NOW)
        .expect("edit");
    pair.edge_local_changed();
    let removal = crate::hotlist::Removal {
        by: "op.kim".into(),
        at: NOW,
        reason: "vehicle recovered".into(),
    };
    pair.hub_local.remove("hub-1", removal).expect("remove");
    pair.hub_local_changed();
    let start = pair.now;
    assert!(pair.run_until(start + secs(60), |p| {
        p.edge_local
            .get("hub-1")
            .is_some_and(|e| e.removed.is_some())
            && p.hub_local.entries() == p.edge_local.entries()
            && p.hub_local.get("hub-1").is_some_and(|e| e.colour == "red")
    }));
    let active: Vec<String> = pair
        .edge_local
        .active(NOW)
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(active, vec!["car-1".to_string()]);
    // A session that has not heard hello refuses a local entries frame.
    let mut fresh = HubSession::new(
        pair.device(),
        crate::crypto::SecretKey::from_bytes(&[11; 32]).public(),
        pair.receipt_key.clone(),
        pair.hub.progress,
    );
    let out = fresh.handle_frame(Frame::LocalEntries { doc: Vec::new() }, UnixMillis(5));
    assert!(out.iter().any(|o| matches!(o, HubOutput::Refused(_))));
}

fn edge_holds(p: &Pair, source: &str, g: u64) -> bool {
    p.edge_lists.get(source) == Some(&g) && p.node_lists.iter().any(|(s, n)| s == source && *n == g)
}

#[test]
fn a_new_generation_reaches_a_connected_edge_whole_then_as_a_delta() {
    let mut p = Pair::new(31, lists_link(), sim_config());
    add_reads(&mut p, 50, false);
    assert!(p.run_until(secs(30), Pair::synced));
    p.publish_list("ncic", 1);
    assert!(p.run_until(p.now + secs(10), |p| edge_holds(p, "ncic", 1)));
    p.publish_list("ncic", 2);
    assert!(p.run_until(p.now + secs(10), |p| edge_holds(p, "ncic", 2)));
    // The first went whole (the edge had none), the second as a delta.
    assert_eq!(
        p.trace
            .iter()
            .filter(|t| !t.starts_with("ingest"))
            .cloned()
            .collect::<Vec<_>>(),
        [
            "full ncic 1",
            "applied ncic 1",
            "delta ncic 1 2",
            "applied ncic 2"
        ]
    );
    assert!(p.hub.refusals.is_empty());
}

#[test]
fn an_edge_offline_during_two_generations_applies_them_before_its_backlog_reaches_the_hub() {
    let mut link = lists_link();
    link.outages = vec![(secs(5), secs(15))];
    let mut p = Pair::new(32, link, sim_config());
    // Large enough to go in several chunks.
    p.hub_list_size = 3 * crate::wire::MAX_HOTLIST_CHUNK + 5;
    p.publish_list("ncic", 1);
    p.publish_list("ca-svs", 1);
    add_reads(&mut p, 20, false);
    assert!(p.run_until(secs(5), |p| p.synced() && edge_holds(p, "ca-svs", 1)));
    let uploaded = p.log.log_len();
    // Offline: two imports of one list (too far behind for a delta),
    // one of the other, and a backlog of reads.
    p.run_until(secs(8), |_| false);
    assert!(p.session.is_none(), "the outage dropped the link");
    p.publish_list("ncic", 2);
    p.publish_list("ncic", 3);
    p.publish_list("ca-svs", 2);
    add_reads(&mut p, 500, false);
    assert!(p.run_until(secs(60), |p| p.synced()
        && edge_holds(p, "ncic", 3)
        && edge_holds(p, "ca-svs", 2)));
    let pos = |what: &str| p.trace.iter().position(|t| t == what);
    let backlog = pos(&format!("ingest {uploaded}")).expect("the backlog was ingested");
    assert!(pos("full ncic 3").is_some(), "{:?}", p.trace);
    assert!(pos("delta ca-svs 1 2").is_some(), "{:?}", p.trace);
    assert!(
        pos("applied ncic 3").is_some_and(|a| a < backlog),
        "{:?}",
        p.trace
    );
    assert!(
        pos("applied ca-svs 2").is_some_and(|a| a < backlog),
        "{:?}",
        p.trace
    );
    assert_hub_copy_exact(&p);
}

#[test]
fn a_delta_that_does_not_apply_is_followed_by_the_whole_list() {
    let mut p = Pair::new(33, lists_link(), sim_config());
    p.publish_list("ncic", 1);
    assert!(p.run_until(secs(10), |p| edge_holds(p, "ncic", 1)));
    p.edge_delta_broken = true;
    p.publish_list("ncic", 2);
    assert!(p.run_until(p.now + secs(10), |p| edge_holds(p, "ncic", 2)));
    let tail: Vec<&str> = p.trace.iter().map(String::as_str).skip(2).collect();
    assert_eq!(tail, ["delta ncic 1 2", "full ncic 2", "applied ncic 2"]);
}

#[test]
fn a_list_that_cannot_be_applied_never_blocks_the_reads() {
    for hang in [false, true] {
        let mut link = lists_link();
        link.outages = vec![(secs(2), secs(6))];
        let cfg = SyncTuning {
            hotlist_wait: secs(5),
            ..sim_config()
        };
        let mut p = Pair::new(34, link, cfg);
        p.edge_lists_broken = !hang;
        p.edge_lists_hang = hang;
        p.publish_list("ncic", 1);
        add_reads(&mut p, 100, false);
        assert!(p.run_until(secs(60), Pair::synced), "hang: {hang}");
        assert!(p.edge_lists.is_empty());
        // Refused each time it came, never applied; the hub knows the
        // node holds nothing (or was never told otherwise).
        assert!(p.node_lists.iter().all(|(_, g)| *g == 0));
        assert_hub_copy_exact(&p);
    }
}

#[test]
fn hotlist_frames_that_do_not_fit_together_are_refused_and_nothing_applied() {
    let mut p = Pair::new(35, lists_link(), sim_config());
    assert!(p.run_until(secs(5), |p| p.edge.state() == LinkState::Ready));
    let log = &p.log;
    // A delta from a generation the node does not hold.
    p.edge.handle_frame(
        Frame::HotlistDelta {
            source: "ncic".into(),
            from: 4,
            to: 5,
            delta: vec![1],
        },
        p.now,
        log,
    );
    // Chunks without a start, or out of order.
    for offset in [4, 0, 9] {
        p.edge.handle_frame(
            Frame::HotlistFull {
                source: "ca-svs".into(),
                generation: 2,
                total: 12,
                offset,
                chunk: vec![1; 3],
            },
            p.now,
            log,
        );
    }
    let mut refused = 0;
    while let Some(ev) = p.edge.poll_event() {
        match ev {
            EdgeEvent::HotlistRefused { .. } => refused += 1,
            EdgeEvent::HotlistDelta { .. } | EdgeEvent::HotlistFull { .. } => {
                panic!("nothing may be applied: {ev:?}")
            }
            _ => {}
        }
    }
    assert_eq!(refused, 3);
    assert_eq!(p.edge.hotlists_pending(), 0);
    // Each refusal tells the hub what the node still holds.
    let mut told = Vec::new();
    while let Some(o) = p.edge.poll_transmit(p.now, &p.log) {
        if let Frame::HotlistApplied { source, generation } = o.frame {
            told.push((source, generation));
        }
    }
    assert_eq!(told.len(), 3);
    assert!(told.iter().all(|(_, g)| *g == 0));
}

fn arb_hotlist_frame() -> impl proptest::strategy::Strategy<Value = Frame> {
    use proptest::prelude::*;
    let source = prop::sample::select(vec!["ncic", "ca-svs"]);
    prop_oneof![
        (
            source.clone(),
            0u64..4,
            0u64..6,
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(s, from, to, delta)| Frame::HotlistDelta {
                source: s.into(),
                from,
                to,
                delta,
            }),
        (
            source,
            0u64..4,
            0u64..24,
            0u64..24,
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(s, generation, total, offset, chunk)| Frame::HotlistFull {
                source: s.into(),
                generation,
                total,
                offset,
                chunk,
            }),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// Whatever bulk-list frames a hub sends, in whatever order, the edge
    /// core never panics, hands over only generations assembled whole from
    /// in-order pieces and deltas from what it holds, and never leaves the
    /// backlog waiting once the driver answered each.
    #[test]
    fn the_edge_core_takes_any_hotlist_frames_without_panicking(
        frames in proptest::collection::vec(arb_hotlist_frame(), 0..40),
        apply in proptest::prelude::any::<bool>(),
    ) {
        let mut p = Pair::new(36, lists_link(), sim_config());
        proptest::prop_assert!(p.run_until(secs(5), |p| p.edge.state() == LinkState::Ready));
        let mut held: BTreeMap<String, u64> = BTreeMap::new();
        for f in frames {
            p.edge.handle_frame(f, p.now, &p.log);
            while let Some(ev) = p.edge.poll_event() {
                match ev {
                    EdgeEvent::HotlistFull { source, generation, .. } => {
                        if apply {
                            held.insert(source.clone(), generation);
                            p.edge.hotlist_applied(&source, generation);
                        } else {
                            p.edge.hotlist_failed(&source);
                        }
                    }
                    EdgeEvent::HotlistDelta { source, from, to, .. } => {
                        proptest::prop_assert_eq!(held.get(&source).copied().unwrap_or(0), from);
                        if apply {
                            held.insert(source.clone(), to);
                            p.edge.hotlist_applied(&source, to);
                        } else {
                            p.edge.hotlist_failed(&source);
                        }
                    }
                    _ => {}
                }
            }
        }
        proptest::prop_assert_eq!(p.edge.hotlists_pending(), 0);
    }
}
