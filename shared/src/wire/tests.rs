use super::*;
use crate::crypto::SecretKey;
use crate::log::LogWriter;
use crate::types::{Location, ReadContent, TimeSource};
use proptest::prelude::*;

fn read(plate: &str) -> ReadContent {
    ReadContent {
        location: Location::Site {
            site_id: "site-1".into(),
        },
        camera: "cam-a".into(),
        plate: plate.into(),
        confidence: 9000,
        char_confidence: vec![9000; plate.len()],
        issuer: Default::default(),
        detector_model: "det".into(),
        ocr_model: "ocr".into(),
        crop_hash: Hash32([1; 32]),
        overview_hash: Hash32([2; 32]),
    }
}

fn sample_frames() -> Vec<Frame> {
    let device = DeviceId::new("pole-1").expect("valid");
    let mut w = LogWriter::new(SecretKey::from_bytes(&[3; 32]), device.clone());
    let e = w
        .append_read(
            read("ABC123"),
            UnixMillis(1_700_000_000_000),
            TimeSource::Ntp,
        )
        .expect("valid read");
    let hub = receipt_key();
    let receipt = Receipt {
        format: 1,
        device: device.clone(),
        next_seq: 1,
        head: e.hash(),
        at: UnixMillis(5),
    }
    .sign(&hub);
    vec![
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            device,
            log_size: 1,
            policy_version: 2,
            hotlists: Vec::new(),
        }),
        Frame::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            receipt: receipt.clone(),
            receipt_cert: hub.cert_der().to_vec(),
        }),
        Frame::Entries(
            Entries::from_log(vec![e.clone()], Some(w.checkpoint(UnixMillis(6))))
                .expect("one entry"),
        ),
        Frame::Ack(receipt),
        Frame::Refused(Refusal {
            code: RefusalCode::Fork,
            seq: Some(3),
            detail: "two entries".into(),
        }),
        Frame::Image(ImageBlob {
            seq: 0,
            hash: Hash32([9; 32]),
            bytes: vec![1, 2, 3],
        }),
        Frame::ImageAck {
            hash: Hash32([9; 32]),
        },
        Frame::Ping { nonce: 7 },
        Frame::Pong { nonce: 7 },
        Frame::Policy {
            policy: vec![1, 2, 3],
        },
        Frame::PolicyCurrent { version: 3 },
        Frame::PolicyApplied { version: 3 },
        Frame::WantImages {
            images: vec![(0, Hash32([9; 32]))],
        },
        Frame::Loss {
            entry: w
                .append_loss(0, 0, e.hash(), "unreadable", UnixMillis(7), TimeSource::Ntp)
                .expect("valid loss")
                .encode(),
        },
        Frame::HotlistDelta {
            source: "ncic".into(),
            from: 1,
            to: 2,
            delta: vec![1, 2, 3],
        },
        Frame::HotlistFull {
            source: "ca-svs".into(),
            generation: 3,
            total: 5,
            offset: 2,
            chunk: vec![4, 5, 6],
        },
        Frame::HotlistApplied {
            source: "ncic".into(),
            generation: 2,
        },
        Frame::ShowHeld {
            policy: true,
            sources: vec!["ncic".into()],
        },
        Frame::HeldPolicy {
            policy: vec![1, 2, 3],
        },
        Frame::HeldList {
            header: vec![4, 5, 6],
        },
    ]
}

#[test]
fn what_a_node_shows_and_what_it_is_asked_for_are_bounded() {
    let ok = |f: Frame| {
        assert!(
            Frame::decode_prefixed(&f.encode(), Lane::Control.max_frame_from_hub())
                .expect("decodes")
                .is_some()
        );
    };
    let bad = |f: Frame| {
        assert!(
            Frame::decode_prefixed(&f.encode(), Lane::Control.max_frame_from_hub()).is_err(),
            "{f:?} must be refused"
        );
    };
    let names = |n: usize| (0..n).map(|i| format!("list-{i}")).collect::<Vec<_>>();
    ok(Frame::ShowHeld {
        policy: false,
        sources: names(MAX_HOTLIST_SOURCES),
    });
    bad(Frame::ShowHeld {
        policy: false,
        sources: names(MAX_HOTLIST_SOURCES + 1),
    });
    bad(Frame::ShowHeld {
        policy: false,
        sources: vec!["../etc".into()],
    });
    ok(Frame::HeldList {
        header: vec![0; MAX_HELD_HEADER],
    });
    bad(Frame::HeldList {
        header: vec![0; MAX_HELD_HEADER + 1],
    });
}

#[test]
fn frames_round_trip() {
    for f in sample_frames() {
        let bytes = f.encode();
        let (back, used) = Frame::decode_prefixed(&bytes, f.lane().max_frame())
            .expect("decodes")
            .expect("complete");
        assert_eq!(used, bytes.len());
        assert_eq!(back, f);
        // Any strict prefix is incomplete, never an error or a panic.
        for cut in 0..bytes.len() {
            let r = Frame::decode_prefixed(&bytes[..cut], f.lane().max_frame());
            assert!(matches!(r, Ok(None) | Err(_)));
        }
    }
}

#[test]
fn oversized_length_is_refused_before_reading_the_body() {
    let prefix = (MAX_ENTRIES_FRAME as u32 + 1).to_be_bytes();
    assert!(matches!(
        Frame::decode_prefixed(&prefix, MAX_ENTRIES_FRAME),
        Err(WireError::TooLarge { .. })
    ));
    // A control lane refuses an entries-sized frame.
    let big = Frame::Image(ImageBlob {
        seq: 0,
        hash: Hash32([0; 32]),
        bytes: vec![0u8; 32_000],
    });
    assert!(matches!(
        Frame::decode_prefixed(&big.encode(), MAX_CONTROL_FRAME),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn bounds_are_checked_after_decoding() {
    let Frame::Entries(one) = sample_frames().swap_remove(2) else {
        panic!("the third sample frame holds entries");
    };
    let empty = Frame::Entries(Entries {
        entries: vec![],
        checkpoint: None,
        ..one.clone()
    });
    assert!(Frame::decode_prefixed(&empty.encode(), MAX_ENTRIES_FRAME).is_err());
    let overflow = Frame::Entries(Entries {
        first_seq: u64::MAX,
        checkpoint: None,
        ..one.clone()
    });
    assert!(Frame::decode_prefixed(&overflow.encode(), MAX_ENTRIES_FRAME).is_err());
    // A checkpoint must end where the frame's entries end.
    let mut elsewhere = one.clone();
    if let Some(c) = elsewhere.checkpoint.as_mut() {
        c.checkpoint.size += 1;
    }
    assert!(
        Frame::decode_prefixed(&Frame::Entries(elsewhere).encode(), MAX_ENTRIES_FRAME).is_err()
    );
    assert!(Frame::decode_prefixed(&Frame::Entries(one).encode(), MAX_ENTRIES_FRAME).is_ok());
    let mut trailing = Frame::Ping { nonce: 1 }.encode();
    trailing.push(0);
    let len = (trailing.len() - LEN_PREFIX) as u32;
    trailing[..4].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        Frame::decode_prefixed(&trailing, MAX_CONTROL_FRAME),
        Err(WireError::Trailing(1))
    ));
}

#[test]
fn compact_entries_rebuild_the_signed_log() {
    let device = DeviceId::new("pole-1").expect("valid");
    let mut w = LogWriter::new(SecretKey::from_bytes(&[3; 32]), device.clone());
    let log: Vec<_> = (0..5)
        .map(|i| {
            w.append_read(read("ABC123"), UnixMillis(1_000 + i), TimeSource::Gps)
                .expect("valid")
        })
        .collect();
    let canonical: usize = log[2..].iter().map(|e| e.encode().len()).sum();
    let frame = Entries::from_log(log[2..].to_vec(), None).expect("consecutive");
    assert_eq!((frame.first_seq, frame.end()), (2, 5));
    let compact = Frame::Entries(frame.clone()).encode().len();
    // Device, sequence and previous hash stay home: at least 40 bytes an
    // entry, less the frame's one `prev`.
    assert!(
        compact + 3 * 40 <= canonical + 40,
        "{compact} vs {canonical}"
    );
    assert_eq!(frame.rebuild(&device), log[2..].to_vec());
    assert!(Entries::from_log(vec![log[0].clone(), log[2].clone()], None).is_none());
    assert!(Entries::from_log(vec![], None).is_none());
}

#[test]
fn the_hub_checks_each_frame_in_one_pass() {
    use crate::sync::{verify_batch, Validity};
    let device = DeviceId::new("pole-1").expect("valid");
    let key = SecretKey::from_bytes(&[3; 32]);
    let public = key.public();
    let mut w = LogWriter::new(key, device.clone());
    let log: Vec<_> = (0..4)
        .map(|i| {
            w.append_read(read("XYZ987"), UnixMillis(10_000 + i), TimeSource::Gps)
                .expect("valid")
        })
        .collect();
    let frame =
        || Entries::from_log(log.clone(), Some(w.checkpoint(UnixMillis(20_000)))).expect("one run");
    let ok = verify_batch(&public, &device, Validity::ALWAYS, frame()).expect("verifies");
    assert_eq!(ok.entries.len(), 4);
    assert!(ok
        .entries
        .iter()
        .zip(&log)
        .all(|(v, e)| v.entry == *e && v.hash == e.hash() && v.bytes == e.encode()));
    // Captured before the certificate was valid.
    let later = Validity {
        not_before: UnixMillis(10_002),
        not_after: UnixMillis(u64::MAX),
    };
    let r = verify_batch(&public, &device, later, frame()).expect_err("refused");
    assert_eq!((r.code, r.seq), (RefusalCode::OutsideValidity, Some(0)));
    // Another device's name: the rebuilt header is not what was signed.
    let other = DeviceId::new("pole-2").expect("valid");
    let r = verify_batch(&public, &other, Validity::ALWAYS, frame()).expect_err("refused");
    assert_eq!(r.code, RefusalCode::BadSignature);
    // A checkpoint naming another head than the entries reach.
    let mut f = frame();
    if let Some(c) = f.checkpoint.as_mut() {
        *c = sign_checkpoint(
            &SecretKey::from_bytes(&[3; 32]),
            device.clone(),
            4,
            Hash32([1; 32]),
            UnixMillis(1),
        );
    }
    let r = verify_batch(&public, &device, Validity::ALWAYS, f).expect_err("refused");
    assert_eq!(r.code, RefusalCode::Fork);
    // An edited plate.
    let mut f = frame();
    if let Some(b) = f.entries[2].body.as_mut() {
        b.content.plate = "EDIT12".into();
    }
    let r = verify_batch(&public, &device, Validity::ALWAYS, f).expect_err("refused");
    assert_eq!((r.code, r.seq), (RefusalCode::Edited, Some(2)));
}

/// The receipt key of the test vectors' deployment.
fn receipt_key() -> crate::signer::HubKey<crate::signer::ReceiptSigning> {
    crate::signer::fixture::key(4)
}

#[test]
fn receipts_are_bound_to_the_hub_key() {
    let hub = receipt_key();
    let other = SecretKey::from_bytes(&[5; 32]);
    let r = Receipt {
        format: 1,
        device: DeviceId::new("v-1").expect("valid"),
        next_seq: 10,
        head: Hash32([1; 32]),
        at: UnixMillis(1_700_000_000_000),
    };
    let mut s = r.sign(&hub);
    assert!(s.signature_valid(&hub.public()));
    assert!(s.verify(hub.cert()));
    assert!(!s.signature_valid(&other.public()));
    // The receipt key's certificate taken for another purpose's is not a
    // receipt key's.
    let mut as_policy = hub.cert().clone();
    as_policy.purpose = crate::cert::KeyPurpose::Policy;
    assert!(!s.verify(&as_policy));
    // Signed when the certificate was not valid.
    let mut early = s.clone();
    early.receipt.at = UnixMillis(1);
    let early = early.receipt.sign(&hub);
    assert!(!early.verify(hub.cert()));
    s.receipt.next_seq = 11;
    assert!(!s.signature_valid(&hub.public()));
    let back = SignedReceipt::decode(&s.encode()).expect("decodes");
    assert_eq!(back, s);
}

/// Inputs that once crashed or nearly crashed a decoder, kept as regression
/// tests (one file per input, raw bytes including the length prefix).
#[test]
fn past_crashers_are_refused_without_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wire-crashers");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).expect("crashers folder") {
        let bytes = std::fs::read(f.expect("entry").path()).expect("readable");
        for lane in [Lane::Control, Lane::Entries, Lane::Images] {
            let _ = Frame::decode_prefixed(&bytes, lane.max_frame());
        }
        n += 1;
    }
    assert!(n > 0, "the crashers folder must not be empty");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for lane in [Lane::Control, Lane::Entries, Lane::Images] {
            let _ = Frame::decode_prefixed(&bytes, lane.max_frame());
            let _ = Frame::decode_body(&bytes, lane.max_frame());
        }
        let _ = SignedReceipt::decode(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(idx in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let frames = sample_frames();
        let f = &frames[idx.index(frames.len())];
        let mut bytes = f.encode();
        let p = pos.index(bytes.len());
        bytes[p] = val;
        if let Ok(Some((Frame::Entries(e), _))) = Frame::decode_prefixed(&bytes, MAX_ENTRIES_FRAME) {
            let device = DeviceId::new("pole-1").expect("valid");
            let _ = crate::sync::verify_batch(&SecretKey::from_bytes(&[3; 32]).public(), &device, crate::sync::Validity::ALWAYS, e);
        }
    }
}

#[test]
fn new_frames_keep_the_old_variant_numbers_and_their_bounds() {
    // Formats are contracts: the frames added later come after the old
    // ones, so an old frame's encoding is unchanged.
    assert_eq!(Frame::Ping { nonce: 1 }.encode()[LEN_PREFIX], 7);
    assert_eq!(Frame::WantImages { images: vec![] }.encode()[LEN_PREFIX], 9);
    assert_eq!(Frame::Loss { entry: vec![] }.encode()[LEN_PREFIX], 10);
    assert_eq!(
        RefusalCode::from_close_code(u64::from(RefusalCode::IdentityConflict.close_code())),
        Some(RefusalCode::IdentityConflict)
    );
    let many = Frame::WantImages {
        images: vec![(0, Hash32([1; 32])); MAX_WANTED_IMAGES + 1],
    };
    assert!(Frame::decode_prefixed(&many.encode(), MAX_CONTROL_FRAME).is_err());
    let big = Frame::Loss {
        entry: vec![0; crate::log::MAX_ENTRY_BYTES + 1],
    };
    assert!(Frame::decode_prefixed(&big.encode(), MAX_ENTRIES_FRAME).is_err());
}

#[test]
fn a_policy_frame_is_bounded_and_only_the_hubs_control_lane_carries_one() {
    let max = crate::control::MAX_POLICY_BYTES;
    let ok = Frame::Policy {
        policy: vec![7; max],
    };
    let bytes = ok.encode();
    // The hub's control frames may carry the policy, and so may a node's
    // (the policy it holds, shown to a hub restored from a backup).
    for limit in [
        Lane::Control.max_frame(),
        Lane::Control.max_frame_from_hub(),
    ] {
        let (back, _) = Frame::decode_prefixed(&bytes, limit)
            .expect("decodes")
            .expect("whole");
        assert_eq!(back, ok);
    }
    let shown = Frame::HeldPolicy {
        policy: vec![7; max],
    };
    assert!(
        Frame::decode_prefixed(&shown.encode(), Lane::Control.max_frame())
            .expect("decodes")
            .is_some()
    );
    let over_shown = Frame::HeldPolicy {
        policy: vec![7; max + 1],
    };
    assert!(Frame::decode_prefixed(&over_shown.encode(), Lane::Control.max_frame()).is_err());
    let over = Frame::Policy {
        policy: vec![7; max + 1],
    };
    assert!(Frame::decode_prefixed(&over.encode(), Lane::Control.max_frame_from_hub()).is_err());
    // A length prefix over the limit is refused before anything is read.
    let prefix = u32::try_from(Lane::Control.max_frame_from_hub() + 1)
        .expect("fits")
        .to_be_bytes();
    assert!(Frame::body_len(prefix, Lane::Control.max_frame_from_hub()).is_err());
}

#[test]
fn a_holds_frame_is_bounded_either_way() {
    let max = crate::control::holds_doc::MAX_HOLDS_DOC_BYTES;
    let ok = Frame::Holds { doc: vec![7; max] };
    for limit in [
        Lane::Control.max_frame(),
        Lane::Control.max_frame_from_hub(),
    ] {
        let (back, _) = Frame::decode_prefixed(&ok.encode(), limit)
            .expect("decodes")
            .expect("whole");
        assert_eq!(back, ok);
        let over = Frame::Holds {
            doc: vec![7; max + 1],
        };
        assert!(Frame::decode_prefixed(&over.encode(), limit).is_err());
    }
}

#[test]
fn a_local_entries_frame_is_bounded_either_way() {
    let max = crate::hotlist::local::MAX_LOCAL_DOC_BYTES;
    let ok = Frame::LocalEntries { doc: vec![7; max] };
    for limit in [
        Lane::Control.max_frame(),
        Lane::Control.max_frame_from_hub(),
    ] {
        let (back, _) = Frame::decode_prefixed(&ok.encode(), limit)
            .expect("decodes")
            .expect("whole");
        assert_eq!(back, ok);
        let over = Frame::LocalEntries {
            doc: vec![7; max + 1],
        };
        assert!(Frame::decode_prefixed(&over.encode(), limit).is_err());
    }
}

#[test]
fn hotlist_frames_keep_the_old_variants_and_are_bounded() {
    // Appended after Holds (variant 14).
    assert_eq!(Frame::Holds { doc: vec![] }.encode()[LEN_PREFIX], 14);
    let applied = Frame::HotlistApplied {
        source: "ncic".into(),
        generation: 1,
    };
    assert_eq!(applied.encode()[LEN_PREFIX], 17);
    let decode =
        |f: &Frame| Frame::decode_prefixed(&f.encode(), Lane::Control.max_frame_from_hub());
    // A whole chunk passes; one byte more is refused, by the lane's limit
    // or the frame's own.
    let chunk = Frame::HotlistFull {
        source: "ncic".into(),
        generation: 1,
        total: MAX_HOTLIST_CHUNK as u64 * 3,
        offset: MAX_HOTLIST_CHUNK as u64,
        chunk: vec![7; MAX_HOTLIST_CHUNK],
    };
    assert!(decode(&chunk).expect("decodes").is_some());
    // Nodes never send one; their control frames stay within the largest
    // they send (a policy shown).
    let prefix = u32::try_from(Lane::Control.max_frame() + 1)
        .expect("fits")
        .to_be_bytes();
    assert!(Frame::body_len(prefix, Lane::Control.max_frame()).is_err());
    assert!(Lane::Control.max_frame() <= crate::control::MAX_POLICY_BYTES + 1024);
    let bad = |f: Frame| assert!(decode(&f).is_err(), "{f:?} must be refused");
    bad(Frame::HotlistFull {
        source: "ncic".into(),
        generation: 1,
        total: MAX_HOTLIST_CHUNK as u64 * 3,
        offset: 0,
        chunk: vec![7; MAX_HOTLIST_CHUNK + 1],
    });
    // A chunk past the end of its generation, or an over-large generation.
    bad(Frame::HotlistFull {
        source: "ncic".into(),
        generation: 1,
        total: 10,
        offset: 8,
        chunk: vec![7; 3],
    });
    bad(Frame::HotlistFull {
        source: "ncic".into(),
        generation: 1,
        total: MAX_GENERATION_BYTES + 1,
        offset: 0,
        chunk: vec![7; 3],
    });
    bad(Frame::HotlistFull {
        source: "ncic".into(),
        generation: 1,
        total: u64::MAX,
        offset: u64::MAX - 1,
        chunk: vec![7; 3],
    });
    bad(Frame::HotlistDelta {
        source: "ncic".into(),
        from: 2,
        to: 2,
        delta: vec![],
    });
    bad(Frame::HotlistDelta {
        source: "ncic".into(),
        from: 1,
        to: 2,
        delta: vec![0; MAX_HOTLIST_CHUNK + 1],
    });
    // A source names a file on the edge: no paths.
    for name in [
        "",
        "../etc",
        "a/b",
        ".hidden",
        "UPPER",
        &"x".repeat(MAX_SOURCE_NAME + 1),
    ] {
        bad(Frame::HotlistApplied {
            source: name.into(),
            generation: 1,
        });
    }
    let hello = |n: usize| {
        Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            device: DeviceId::new("pole-1").expect("valid"),
            log_size: 0,
            policy_version: 0,
            hotlists: (0..n)
                .map(|i| HeldList {
                    source: format!("list-{i}"),
                    generation: 1,
                })
                .collect(),
        })
    };
    assert!(decode(&hello(MAX_HOTLIST_SOURCES))
        .expect("decodes")
        .is_some());
    assert!(decode(&hello(MAX_HOTLIST_SOURCES + 1)).is_err());
}

#[test]
fn a_generation_goes_whole_in_bounded_chunks_that_rebuild_it() {
    let bytes: Vec<u8> = (0..(MAX_HOTLIST_CHUNK * 2 + 17)).map(|i| i as u8).collect();
    let frames: Vec<Frame> = full_generation_frames("ncic", 4, &bytes).collect();
    assert_eq!(frames.len(), 3);
    let mut back = Vec::new();
    for f in &frames {
        let (f, _) = Frame::decode_prefixed(&f.encode(), Lane::Control.max_frame_from_hub())
            .expect("decodes")
            .expect("whole");
        let Frame::HotlistFull {
            offset,
            chunk,
            total,
            ..
        } = f
        else {
            panic!("a chunk");
        };
        assert_eq!(offset, back.len() as u64);
        assert_eq!(total, bytes.len() as u64);
        back.extend(chunk);
    }
    assert_eq!(back, bytes);
    // An empty generation is one empty chunk.
    assert_eq!(full_generation_frames("ncic", 1, &[]).count(), 1);
}
