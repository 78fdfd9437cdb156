use super::*;

#[test]
fn an_expiry_date_ends_with_its_day_and_shows_as_it() {
    let t = end_of_day("2026-12-01").expect("a date");
    assert_eq!(t.to_string(), "2026-12-02T00:00:00.000Z");
    assert_eq!(expiry_date(t), "2026-12-01");
    for bad in ["2026-13-01", "1.12.2026", "2026-12-1", "", "2026-12-01T00"] {
        assert!(end_of_day(bad).is_err(), "{bad}");
    }
}

fn source(issued_at: UnixMillis) -> SourceView {
    SourceView {
        name: "ncic".into(),
        format: Format::Ncic,
        settings: Default::default(),
        current: Some(alpr_shared::hotlist::generation::GenerationInfo {
            source: "ncic".into(),
            number: 7,
            issued_at,
            source_sha256: alpr_shared::types::Hash32::ZERO,
            source_rows: 1_250_001,
            rows: 1_250_000,
            categories: vec![(Category::StolenVehicle, 1_250_000)],
            settings: Default::default(),
        }),
    }
}

#[test]
fn a_list_older_than_the_policy_allows_is_flagged_stale() {
    let now = UnixMillis(1_800_000_000_000);
    let day = 86_400_000;
    let fresh = sources_table(&[source(UnixMillis(now.0 - 3_600_000))], day, now).into_string();
    assert!(fresh.contains(">1,250,000<"), "{fresh}");
    assert!(fresh.contains("stolen-vehicle 1,250,000"), "{fresh}");
    assert!(!fresh.contains("stale"), "{fresh}");
    let old = sources_table(&[source(UnixMillis(now.0 - 3 * day))], day, now).into_string();
    assert!(old.contains("3 d — stale (older than 24 h)"), "{old}");
}

#[test]
fn counts_are_grouped_by_thousands() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1000), "1,000");
    assert_eq!(count(1_048_576), "1,048,576");
}

#[test]
fn an_import_format_is_named_as_the_command_names_it() {
    let mut f = ImportForm {
        format: "ca-doj".into(),
        ..ImportForm::default()
    };
    assert!(import_query(&f).is_ok_and(|q| q.format.is_some_and(|x| x.name() == "ca-doj")));
    f.format = "xls".into();
    assert!(import_query(&f).is_err_and(|e| e.contains("xls")));
}
