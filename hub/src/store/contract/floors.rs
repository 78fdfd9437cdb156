//! The store's contract for generation numbers learned from nodes, on
//! every backend.

use super::*;

contract_tests!(a_learned_generation_number_is_kept_per_list_and_only_raised,);

fn a_learned_generation_number_is_kept_per_list_and_only_raised(store: &dyn HubStorage) {
    let floor = |s: &str| store.generation_floor(s).expect("read");
    assert_eq!(floor("ncic"), 0, "none learned");
    let raise = |source: &str, number: u64| WriteOp::GenerationFloor {
        source: source.into(),
        number,
    };
    store.commit(vec![raise("ncic", 7)]).expect("commit");
    assert_eq!(floor("ncic"), 7);
    assert_eq!(floor("ca-svs"), 0, "per list");
    // A lower number (a node holding an older copy) lowers nothing.
    store
        .commit(vec![raise("ncic", 3), raise("ca-svs", 2)])
        .expect("commit");
    assert_eq!(floor("ncic"), 7);
    assert_eq!(floor("ca-svs"), 2);
    store.commit(vec![raise("ncic", 9)]).expect("commit");
    assert_eq!(floor("ncic"), 9);
}
