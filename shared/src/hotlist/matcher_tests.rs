use proptest::prelude::*;

use super::*;
use crate::hotlist::generation::tests::{entry, info, key};
use crate::hotlist::generation::GenerationInfo;
use crate::hotlist::{ListSettings, Removal};

const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

fn generation(number: u64, settings: ListSettings, es: Vec<HotEntry>) -> Arc<Generation> {
    let info = GenerationInfo {
        settings,
        ..info("ncic", number)
    };
    Arc::new(Generation::build(info, es, &key()).expect("builds"))
}

fn listed(plate: &str, state: &str, category: Category) -> HotEntry {
    HotEntry {
        plate: plate.into(),
        state: state.into(),
        category,
        make: "HOND".into(),
        ..HotEntry::default()
    }
}

fn local(id: &str, plate: &str, state: &str) -> LocalEntry {
    LocalEntry {
        id: id.into(),
        plate: plate.into(),
        state: state.into(),
        category: Category::Suspect,
        reason: "robbery suspect".into(),
        case: "24-1234".into(),
        level: AlertLevel::Urgent,
        make: "FORD".into(),
        model: String::new(),
        colour: "RED".into(),
        expires_at: UnixMillis(NOW.0 + 1000),
        author: "officer".into(),
        agency: "PD".into(),
        created_at: UnixMillis(NOW.0 - 1000),
        updated_at: UnixMillis(NOW.0 - 1000),
        removed: None,
    }
}

/// The recogniser's probability of alternative `rank` in these tests.
fn probability(rank: usize) -> Confidence {
    (5_000 / (rank + 1)) as Confidence
}

/// Match `texts` (the best first, then the alternatives).
fn run(m: &Matcher, texts: &[&str], state: Option<&str>) -> Vec<Hit> {
    let alternatives: Vec<(&str, Confidence)> = texts
        .iter()
        .enumerate()
        .skip(1)
        .map(|(rank, t)| (*t, probability(rank)))
        .collect();
    let mut out = Vec::new();
    m.match_read(texts[0], &alternatives, state, NOW, &mut out);
    out
}

fn default_list() -> Arc<Generation> {
    generation(
        1,
        ListSettings::default(),
        vec![
            listed("7ABC123", "CA", Category::StolenVehicle),
            listed("8OB5123", "NV", Category::Wanted),
            listed("4XYZ999", "CA", Category::Immigration),
            listed("000", "CA", Category::StolenPlate),
        ],
    )
}

#[test]
fn exact_plate_reports_how_the_state_compares() {
    let m = Matcher::new(vec![default_list()], Vec::new(), &[]);
    let h = run(&m, &["7ABC123"], None);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].kind, MatchKind::StateUnread);
    assert_eq!(h[0].entry.make, "HOND");
    assert_eq!(h[0].matched_text, "7ABC123");
    assert!(matches!(&h[0].list, ListRef::Bulk { source, generation: 1, .. } if source == "ncic"));
    assert_eq!(run(&m, &["7ABC123"], Some("CA"))[0].kind, MatchKind::Exact);
    assert_eq!(
        run(&m, &["7ABC123"], Some("NV"))[0].kind,
        MatchKind::StateDiffers {
            read_state: "NV".into()
        }
    );
    assert!(run(&m, &["7ABC124"], None).is_empty());
}

#[test]
fn ocr_equivalent_plates_hit_with_their_substitutions() {
    let m = Matcher::new(vec![default_list()], Vec::new(), &[]);
    // 8OB5123 listed; read 8O85123: B read as 8.
    let h = run(&m, &["8O85123"], None);
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].kind,
        MatchKind::OcrEquivalent {
            substitutions: vec![Substitution {
                position: 2,
                read: '8',
                listed: 'B'
            }]
        }
    );
    // Two substitutions are more than the list's one.
    assert!(run(&m, &["80851Z3"], None).is_empty());
    // An exact-strategy list matches only the plate as read.
    let exact = generation(
        2,
        ListSettings {
            strategy: MatchStrategy::Exact,
            ..ListSettings::default()
        },
        vec![listed("8OB5123", "NV", Category::Wanted)],
    );
    let m = Matcher::new(vec![exact], Vec::new(), &[]);
    assert!(run(&m, &["8O85123"], None).is_empty());
    assert_eq!(run(&m, &["8OB5123"], None).len(), 1);
    // Two allowed.
    let two = generation(
        3,
        ListSettings {
            strategy: MatchStrategy::OcrEquivalent {
                max_substitutions: 2,
            },
            ..ListSettings::default()
        },
        vec![listed("8OB5123", "NV", Category::Wanted)],
    );
    let m = Matcher::new(vec![two], Vec::new(), &[]);
    assert_eq!(run(&m, &["80851Z3"], None).len(), 0, "three differ");
    assert_eq!(run(&m, &["80851I3"], None).len(), 0, "three differ");
    assert_eq!(run(&m, &["8085123"], None).len(), 1);
}

#[test]
fn skipped_reads_and_excluded_categories_never_hit() {
    let list = generation(
        1,
        ListSettings {
            skip: vec!["000".into()],
            ..ListSettings::default()
        },
        vec![
            listed("000", "CA", Category::StolenPlate),
            listed("4XYZ999", "CA", Category::Immigration),
        ],
    );
    let m = Matcher::new(vec![list.clone()], Vec::new(), &[Category::Immigration]);
    assert!(run(&m, &["000"], None).is_empty());
    assert!(run(&m, &["4XYZ999"], Some("CA")).is_empty());
    // OOO folds like 000 but is not on the skip list: an OCR hit.
    assert_eq!(run(&m, &["00O"], None).len(), 1);
    let m = Matcher::new(vec![list], Vec::new(), &[]);
    assert_eq!(run(&m, &["4XYZ999"], Some("CA")).len(), 1);
    let mut l = local("a", "4XYZ999", "");
    l.category = Category::Immigration;
    let m = Matcher::new(Vec::new(), vec![l], &[Category::Immigration]);
    assert!(run(&m, &["4XYZ999"], None).is_empty());
}

#[test]
fn local_entries_hit_while_active_only() {
    let mut expired = local("old", "5TRK001", "CA");
    expired.expires_at = NOW;
    let mut removed = local("gone", "5TRK002", "CA");
    removed.removed = Some(Removal {
        by: "sgt".into(),
        at: NOW,
        reason: "vehicle recovered".into(),
    });
    let m = Matcher::new(
        Vec::new(),
        vec![
            local("plain", "5TRK003", "CA"),
            local("wild", "5T*7", ""),
            local("one", "6?QW12", ""),
            expired,
            removed,
        ],
        &[],
    );
    assert!(run(&m, &["5TRK001"], None).is_empty());
    assert!(run(&m, &["5TRK002"], None).is_empty());
    let h = run(&m, &["5TRK003"], Some("CA"));
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].kind, MatchKind::Exact);
    assert_eq!(h[0].list, ListRef::Local { id: "plain".into() });
    assert_eq!(h[0].entry.note, "robbery suspect");
    assert_eq!(h[0].entry.oca, "24-1234");
    assert_eq!(h[0].level, AlertLevel::Urgent);
    let h = run(&m, &["5TXY97"], None);
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].kind,
        MatchKind::Wildcard {
            pattern: "5T*7".into()
        }
    );
    // Tolerant: 0 read for Q.
    let h = run(&m, &["6A0W12"], None);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(run(&m, &["6A0W1"], None).is_empty());
    // An officer's exact entry is OCR-tolerant by one character too.
    assert_eq!(run(&m, &["5TRKOO3"], None).len(), 0);
    assert_eq!(run(&m, &["5TRK0O3"], None).len(), 1);
}

#[test]
fn one_entry_hit_by_several_texts_is_reported_once_at_its_strongest() {
    let m = Matcher::new(vec![default_list()], vec![local("w", "7AB*", "")], &[]);
    let h = run(&m, &["7A8C123", "7ABC123", "7ABC12"], Some("CA"));
    let bulk: Vec<_> = h
        .iter()
        .filter(|h| matches!(h.list, ListRef::Bulk { .. }))
        .collect();
    assert_eq!(bulk.len(), 1);
    assert_eq!(
        bulk[0].kind,
        MatchKind::Alternative {
            best: "7A8C123".into(),
            rank: 1,
            probability: probability(1),
            how: Box::new(MatchKind::Exact),
        },
        "the exact match of the first alternative, naming the plate as read"
    );
    assert_eq!(bulk[0].matched_text, "7ABC123");
    let wild: Vec<_> = h
        .iter()
        .filter(|h| matches!(h.list, ListRef::Local { .. }))
        .collect();
    assert_eq!(wild.len(), 1);
    // Tolerant: 7A8C123 (the best text) matches 7AB* too.
    assert_eq!(
        wild[0].matched_text, "7A8C123",
        "the best-ranked text that matched"
    );
    // Strongest first.
    assert_eq!(h[0].kind.strength(), MatchKind::Exact.strength());
}

/// The case of a wrong stop: `YG9*` listed, the plate read YG8E4F, its
/// first alternative YG9E4F. The hit says so: the best reading, the
/// alternative's rank and probability, how the alternative matched.
#[test]
fn a_hit_on_an_alternative_names_the_plate_as_read() {
    let m = Matcher::new(Vec::new(), vec![local("w", "YG9*", "")], &[]);
    let h = run(&m, &["YG8E4F", "YG9E4F", "YG8E4"], None);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].matched_text, "YG9E4F");
    assert_eq!(
        h[0].kind,
        MatchKind::Alternative {
            best: "YG8E4F".into(),
            rank: 1,
            probability: probability(1),
            how: Box::new(MatchKind::Wildcard {
                pattern: "YG9*".into()
            }),
        }
    );
    // The plate as read matching: a plain kind, whatever else matched.
    let h = run(&m, &["YG9E4F", "YG8E4F"], None);
    assert_eq!(
        h[0].kind,
        MatchKind::Wildcard {
            pattern: "YG9*".into()
        }
    );
}

#[test]
fn many_wildcards_still_find_theirs() {
    let locals: Vec<LocalEntry> = (0..1000)
        .map(|k| {
            let p = entry(k).plate;
            local(&format!("w{k}"), &format!("{}*{}", &p[..3], &p[5..]), "")
        })
        .collect();
    let m = Matcher::new(Vec::new(), locals, &[]);
    for k in [0u64, 17, 999] {
        let p = entry(k).plate;
        let h = run(&m, &[&p], None);
        assert!(
            h.iter().any(|h| h.list
                == ListRef::Local {
                    id: format!("w{k}")
                }),
            "{p}"
        );
    }
}

// The naive reference: every entry of every list against every text.

fn rank(kind: &MatchKind) -> usize {
    match kind {
        MatchKind::Exact => 0,
        MatchKind::StateUnread => 1,
        MatchKind::StateDiffers { .. } => 2,
        MatchKind::OcrEquivalent { substitutions } => 3 + substitutions.len(),
        MatchKind::Wildcard { .. } => 10,
        MatchKind::Alternative { .. } => unreachable!("the reference ranks plain kinds"),
    }
}

fn fold(s: &str) -> String {
    crate::search::fold_plate(s)
}

fn plate_kind(
    read: &str,
    listed: &str,
    state: &str,
    rs: Option<&str>,
    max: usize,
) -> Option<MatchKind> {
    if read.len() != listed.len() || fold(read) != fold(listed) {
        return None;
    }
    let subs: Vec<Substitution> = read
        .chars()
        .zip(listed.chars())
        .enumerate()
        .filter(|(_, (r, l))| r != l)
        .map(|(k, (r, l))| Substitution {
            position: k as u8,
            read: r,
            listed: l,
        })
        .collect();
    if subs.is_empty() {
        Some(match rs {
            None => MatchKind::StateUnread,
            Some(s) if state.is_empty() || s == state => MatchKind::Exact,
            Some(s) => MatchKind::StateDiffers {
                read_state: s.into(),
            },
        })
    } else if subs.len() <= max {
        Some(MatchKind::OcrEquivalent {
            substitutions: subs,
        })
    } else {
        None
    }
}

fn reference(
    lists: &[(Arc<Generation>, usize)],
    locals: &[LocalEntry],
    excluded: &[Category],
    texts: &[&str],
    rs: Option<&str>,
) -> Vec<(String, usize, String, MatchKind, String)> {
    // (list, entry index, plate, kind, text) keeping the best per entry.
    type Best = ((String, usize), (usize, usize), MatchKind, String, String);
    let mut best: Vec<Best> = Vec::new();
    let mut offer =
        |key: (String, usize), kind: MatchKind, ti: usize, plate: String, text: &str| {
            let r = (rank(&kind), ti);
            match best.iter_mut().find(|b| b.0 == key) {
                Some(b) if r < b.1 => *b = (key, r, kind, plate, text.to_string()),
                Some(_) => {}
                None => best.push((key, r, kind, plate, text.to_string())),
            }
        };
    for (ti, t) in texts.iter().enumerate() {
        for (li, (g, max)) in lists.iter().enumerate() {
            if g.info().settings.skip.iter().any(|s| s == t) {
                continue;
            }
            for i in 0..g.len() {
                let e = g.entry(i);
                if excluded.contains(&e.category) {
                    continue;
                }
                if let Some(k) = plate_kind(t, &e.plate, &e.state, rs, *max) {
                    offer((format!("bulk{li}"), i), k, ti, e.plate.clone(), t);
                }
            }
        }
        for (k, l) in locals.iter().enumerate() {
            if excluded.contains(&l.category) || !l.active(NOW) {
                continue;
            }
            let p = PlatePattern::parse(&l.plate, true).expect("valid pattern");
            let kind = if p.has_wildcards() {
                p.matches(t).then(|| MatchKind::Wildcard {
                    pattern: p.as_str().into(),
                })
            } else {
                plate_kind(t, p.as_str(), &l.state, rs, 1)
            };
            if let Some(kind) = kind {
                offer((l.id.clone(), k), kind, ti, l.plate.clone(), t);
            }
        }
    }
    // A hit on an alternative names the best text, its rank, its
    // probability.
    let mut out: Vec<_> = best
        .into_iter()
        .map(|(key, (_, ti), kind, plate, text)| {
            let kind = match ti {
                0 => kind,
                _ => MatchKind::Alternative {
                    best: texts[0].to_string(),
                    rank: ti as u8,
                    probability: probability(ti),
                    how: Box::new(kind),
                },
            };
            (key.0, 0, plate, kind, text)
        })
        .collect();
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matches_what_a_naive_matcher_finds(
        plates in proptest::collection::vec(("[08OBDQ1I5SA]{3,4}", 0usize..3, 0usize..13), 1..60),
        patterns in proptest::collection::vec(("[08OB5*?]{2,5}", any::<bool>()), 0..6),
        texts in proptest::collection::vec("[08OBDQ1I5SA]{3,4}", 1..9),
        max in 0u8..3,
        rs in prop_oneof![Just(None), Just(Some("CA")), Just(Some("NV"))],
        exclude in any::<bool>(),
    ) {
        let states = ["CA", "NV", ""];
        let es: Vec<HotEntry> = plates
            .iter()
            .map(|(p, s, c)| listed(p, states[*s], Category::ALL[*c]))
            .collect();
        let strategy = if max == 0 {
            MatchStrategy::Exact
        } else {
            MatchStrategy::OcrEquivalent { max_substitutions: max }
        };
        let settings = ListSettings { strategy, skip: vec!["000".into()], ..ListSettings::default() };
        let g = generation(1, settings, es);
        let locals: Vec<LocalEntry> = patterns
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| PlatePattern::parse(p, true).is_ok())
            .map(|(k, (p, active))| {
                let mut l = local(&format!("l{k}"), p, "CA");
                if !active {
                    l.expires_at = NOW;
                }
                l
            })
            .collect();
        let excluded: Vec<Category> = if exclude { vec![Category::Wanted, Category::Gang] } else { Vec::new() };
        let m = Matcher::new(vec![g.clone()], locals.clone(), &excluded);
        let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut got: Vec<_> = run(&m, &text_refs, rs)
            .into_iter()
            .map(|h| {
                let list = match h.list {
                    ListRef::Bulk { .. } => "bulk0".to_string(),
                    ListRef::Local { id } => id,
                };
                (list, 0, h.entry.plate, h.kind, h.matched_text)
            })
            .collect();
        got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        let want = reference(&[(g, usize::from(max))], &locals, &excluded, &text_refs, rs);
        prop_assert_eq!(got, want);
    }
}
