//! The store's contract, by concern: Bulk hotlist generations.

use super::*;

contract_tests!(generations_keep_the_last_bytes_and_every_record,);

fn generations_keep_the_last_bytes_and_every_record(store: &dyn HubStorage) {
    assert_eq!(store.generation_bytes("ncic", 1).expect("read"), None);
    assert!(store.generation_records("ncic").expect("read").is_empty());
    for g in 1..=4u64 {
        store
            .store_generation(
                "ncic",
                g,
                format!("generation {g}").as_bytes(),
                format!("record {g}").as_bytes(),
                2,
            )
            .expect("store");
    }
    store
        .store_generation("dmv", 1, b"dmv 1", b"dmv record 1", 2)
        .expect("store");
    assert_eq!(store.generation_bytes("ncic", 2).expect("read"), None);
    assert_eq!(
        store.generation_bytes("ncic", 3).expect("read"),
        Some(b"generation 3".to_vec())
    );
    assert_eq!(
        store.generation_bytes("ncic", 4).expect("read"),
        Some(b"generation 4".to_vec())
    );
    assert_eq!(
        store.generation_records("ncic").expect("read"),
        (1..=4u64)
            .map(|g| (g, format!("record {g}").into_bytes(), g >= 3))
            .collect::<Vec<_>>(),
        "every import record stays: the list's history"
    );
    assert_eq!(
        store.generation_records("dmv").expect("read"),
        vec![(1, b"dmv record 1".to_vec(), true)],
        "sources are apart"
    );
}
