//! The store's contract, by concern: Images, by hash.

use super::*;

contract_tests!(
    images_are_stored_only_when_an_entry_names_them,
    missing_images_are_listed_in_log_order_within_the_limit,
);

// --------------------------------------------------------------- images

fn images_are_stored_only_when_an_entry_names_them(store: &dyn HubStorage) {
    let mut n = Node::new("pole-i", 7);
    let log = vec![n.read(read_of(0, "IMG0001", site()), 5_000)];
    ingest(store, &n, log);
    let crop = image_bytes("crop", 0);
    let image = |seq: u64, bytes: &[u8]| {
        commit1(
            store,
            WriteOp::Image {
                device: n.device.clone(),
                seq,
                hash: sha256(bytes),
                bytes: bytes.to_vec(),
            },
        )
    };
    // Bytes no entry names are not kept.
    let stray = b"not named by any read".to_vec();
    assert_eq!(image(0, &stray), WriteResult::Image(false));
    assert!(!store.has_image(&sha256(&stray)).expect("read"));
    // Nor a named image offered under the wrong entry.
    assert_eq!(image(1, &crop), WriteResult::Image(false));
    assert!(!store.has_image(&sha256(&crop)).expect("read"));
    assert_eq!(image(0, &crop), WriteResult::Image(true));
    assert!(store.has_image(&sha256(&crop)).expect("read"));
    assert_eq!(
        store.image(&sha256(&crop)).expect("read"),
        Some(crop.clone())
    );
    // Offered again: still named, stored once.
    assert_eq!(image(0, &crop), WriteResult::Image(true));
    assert_eq!(node_record(store, &n.device).images, 1);
    assert_eq!(store.image(&sha256(&stray)).expect("read"), None);
}

fn missing_images_are_listed_in_log_order_within_the_limit(store: &dyn HubStorage) {
    let mut n = Node::new("pole-m", 8);
    let mut log: Vec<SignedEntry> = (0..3)
        .map(|i| n.read(read_of(i, &format!("MIS{i:04}"), site()), 5_000 + i))
        .collect();
    // A read with no images names nothing to fetch.
    let none = sha256(&[]);
    log.push(n.read(
        ReadContent {
            crop_hash: none,
            overview_hash: none,
            ..read_of(3, "MIS0003", site())
        },
        5_003,
    ));
    ingest(store, &n, log);
    let all: Vec<(u64, Hash32)> = (0..3)
        .flat_map(|i| {
            [
                (i, sha256(&image_bytes("crop", i))),
                (i, sha256(&image_bytes("overview", i))),
            ]
        })
        .collect();
    let m = store.missing_images(&n.device, 0, 4, 1000).expect("scan");
    assert_eq!(m.images, all);
    assert_eq!(m.scanned_to, 4);
    commit1(
        store,
        WriteOp::Image {
            device: n.device.clone(),
            seq: 0,
            hash: all[0].1,
            bytes: image_bytes("crop", 0),
        },
    );
    let m = store.missing_images(&n.device, 0, 4, 1000).expect("scan");
    assert_eq!(m.images, all[1..]);
    // A small limit stops early and says where; going on from there
    // finds the rest.
    let first = store.missing_images(&n.device, 0, 4, 3).expect("scan");
    assert!(
        !first.images.is_empty() && first.images.len() <= 3,
        "{first:?}"
    );
    assert!(first.scanned_to < 4);
    let rest = store
        .missing_images(&n.device, first.scanned_to, 4, 1000)
        .expect("scan");
    let mut both = first.images.clone();
    both.extend(rest.images);
    assert_eq!(both, all[1..]);
    // Only the asked range.
    let m = store.missing_images(&n.device, 2, 3, 1000).expect("scan");
    assert_eq!(m.images, all[4..]);
}
