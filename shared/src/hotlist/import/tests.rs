use proptest::prelude::*;

use super::*;
use crate::hotlist::sample;

const NCIC: &str = "\
V123456789CA0194200202611037ABC123   CA20272014TOYTCAMSIL
P000000042CA019000020261104ABC 1234  NV2026    
W000000007CA0370000202611058-XYZ-99  AZ
VSHORT
A000000001CA0194200202611064AB5678   CA20282019HONDCIVBLK/WHI
V000000002CA019420020261107AB#12     CA
F000000003CA0194200202611071FEL001   C1
";

#[test]
fn ncic_extract_reads_rows_and_reports_bad_ones_by_line() {
    let p = parse(Format::Ncic, NCIC.as_bytes(), &Columns::default()).expect("parses");
    assert_eq!(p.rows, 7);
    let plates: Vec<&str> = p.entries.iter().map(|e| e.plate.as_str()).collect();
    assert_eq!(plates, ["7ABC123", "ABC1234", "8XYZ99", "4AB5678"]);
    let first = &p.entries[0];
    assert_eq!(first.category, Category::StolenVehicle);
    assert_eq!(first.nic, "V123456789");
    assert_eq!(first.ori, "CA0194200");
    assert_eq!(first.entered, "20261103");
    assert_eq!(first.state, "CA");
    assert_eq!(first.plate_year, "2027");
    assert_eq!(first.vehicle_year, "2014");
    assert_eq!(first.make, "TOYT");
    assert_eq!(first.model, "CAM");
    assert_eq!(first.colour, "SIL");
    assert_eq!(p.entries[1].category, Category::StolenPlate);
    assert_eq!(p.entries[1].state, "NV");
    assert_eq!(p.entries[2].category, Category::Wanted);
    assert_eq!(p.entries[3].category, Category::Amber);
    assert_eq!(p.entries[3].colour, "BLK/WHI");
    let bad: Vec<usize> = p.bad.iter().map(|b| b.line).collect();
    assert_eq!(bad, [4, 6, 7], "{:?}", p.bad);
    assert_eq!(p.bad_rows, 3);
    assert!(p.bad[1].reason.contains('#'), "{}", p.bad[1].reason);
    assert!(p.bad[2].reason.contains("state"), "{}", p.bad[2].reason);
}

#[test]
fn ncic_crlf_and_blank_lines_keep_line_numbers() {
    let text = NCIC.replace('\n', "\r\n");
    let with_blank = format!("\r\n{text}");
    let p = parse(Format::Ncic, with_blank.as_bytes(), &Columns::default()).expect("parses");
    assert_eq!(p.entries.len(), 4);
    assert_eq!(p.bad[0].line, 5, "the blank first line is line 1");
}

fn doj(records: &[&str], footer: &str) -> Vec<u8> {
    let mut s = String::from("DATE11/27/2026 23:05\n");
    for r in records {
        s.push_str(r);
        s.push('\n');
    }
    s.push_str(footer);
    s.push('\n');
    s.into_bytes()
}

fn stolen() -> ParseOptions {
    ParseOptions {
        category: Some(Category::StolenVehicle),
        ..ParseOptions::default()
    }
}

#[test]
fn ca_doj_reads_records_with_the_category_given() {
    let file = doj(
        &[
            "7ABC123 CA1911/20/2026",
            "4XYZ99  CA3711/21/2026",
            "########CA1911/21/2026",
        ],
        "TOTAL RECORD 0000003",
    );
    let p = parse_with(Format::CaDoj, &file, &stolen()).expect("parses");
    assert_eq!(p.rows, 3);
    assert_eq!(p.entries.len(), 2);
    assert_eq!(p.entries[0].plate, "7ABC123");
    assert_eq!(p.entries[0].state, "CA");
    assert_eq!(p.entries[0].entered, "11/20/2026");
    assert_eq!(p.entries[0].note, "county 19");
    assert_eq!(p.entries[1].plate, "4XYZ99");
    assert!(p
        .entries
        .iter()
        .all(|e| e.category == Category::StolenVehicle));
    assert_eq!(p.bad[0].line, 4);
    assert!(p.warnings.is_empty());
}

#[test]
fn ca_doj_footer_must_match_unless_forced() {
    let file = doj(&["7ABC123 CA1911/20/2026"], "TOTAL RECORD 0000002");
    let e = parse_with(Format::CaDoj, &file, &stolen()).expect_err("refused");
    assert!(
        matches!(
            e,
            ImportError::FooterMismatch {
                declared: 2,
                found: 1
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("says 2 records"), "{e}");
    let forced = parse_with(
        Format::CaDoj,
        &file,
        &ParseOptions {
            force: true,
            ..stolen()
        },
    )
    .expect("forced");
    assert_eq!(forced.entries.len(), 1);
    assert_eq!(forced.warnings.len(), 1);
    // No footer at all: a cut file.
    let cut = b"DATE11/27/2026 23:05\n7ABC123 CA1911/20/2026\n";
    assert!(matches!(
        parse_with(Format::CaDoj, cut, &stolen()),
        Err(ImportError::NoFooter)
    ));
}

#[test]
fn ca_doj_needs_its_header_and_a_category() {
    let file = doj(&["7ABC123 CA1911/20/2026"], "TOTAL RECORD 0000001");
    assert!(matches!(
        parse_with(Format::CaDoj, &file, &ParseOptions::default()),
        Err(ImportError::NeedsCategory)
    ));
    assert!(matches!(
        parse_with(Format::CaDoj, b"7ABC123 CA19\nTOTAL RECORD 1\n", &stolen()),
        Err(ImportError::NoHeader(_))
    ));
}

#[test]
fn csv_reads_field_codes_quotes_and_message_keys() {
    let file = "\u{feff}LIC,LIS,MKE,VMA,VMO,VCO,MIS,OCA\n\
                7ABC123,CA,EV,TOYT,CAM,SIL,\"armed, dangerous\",26-1234\n\
                8XYZ999,NV,STOLEN PLATE,,,,,\n\
                ,CA,EV,,,,,\n\
                4AB5678,CA,EW,FORD,F15,RED,\"says \"\"hi\"\"\",\n\
                5AAA111,CA,EV\n";
    let p = parse(Format::Csv, file.as_bytes(), &Columns::default()).expect("parses");
    assert_eq!(p.rows, 5);
    assert_eq!(p.entries.len(), 3);
    assert_eq!(p.entries[0].note, "armed, dangerous");
    assert_eq!(p.entries[0].oca, "26-1234");
    assert_eq!(p.entries[0].category, Category::StolenVehicle);
    assert_eq!(p.entries[1].category, Category::StolenPlate);
    assert_eq!(p.entries[2].category, Category::Wanted);
    assert_eq!(p.entries[2].note, "says \"hi\"");
    let bad: Vec<usize> = p.bad.iter().map(|b| b.line).collect();
    assert_eq!(bad, [4, 6]);
}

#[test]
fn csv_columns_map_other_headers() {
    let file = b"Plate|St|Why\n7ABC-123|ca|gang\n";
    assert!(matches!(
        parse(Format::Csv, file, &Columns::default()),
        Err(ImportError::NoHeader(_))
    ));
    let cols = Columns::parse("PLATE=LIC, ST=lis,Why=MKE").expect("mapping");
    let p = parse(Format::Csv, file, &cols).expect("parses");
    assert_eq!(p.entries[0].plate, "7ABC123");
    assert_eq!(p.entries[0].state, "CA");
    assert_eq!(p.entries[0].category, Category::Gang);
    assert!(Columns::parse("PLATE=XYZ").is_err());
    assert!(Columns::parse("PLATE").is_err());
    let missing = Columns::parse("NUMBER=LIC").expect("mapping");
    assert!(matches!(
        parse(Format::Csv, file, &missing),
        Err(ImportError::BadColumns(_))
    ));
}

#[test]
fn message_keys_and_words_name_categories() {
    for (mke, want) in [
        ("V", Category::StolenVehicle),
        ("EV", Category::StolenVehicle),
        ("QV", Category::StolenVehicle),
        ("EL", Category::StolenPlate),
        ("EMD", Category::Missing),
        ("EPO", Category::ProtectionOrder),
        ("I", Category::Immigration),
        ("immigration", Category::Immigration),
        ("AMBER ALERT", Category::Amber),
        ("Wanted Person", Category::Wanted),
    ] {
        assert_eq!(category_of_mke(mke), Some(want), "{mke}");
    }
    assert_eq!(category_of_mke("ZZZ"), None);
}

#[test]
fn excluded_categories_are_dropped_and_counted() {
    let rows = sample::entries(2000, 7);
    let immigration = rows
        .iter()
        .filter(|e| e.category == Category::Immigration)
        .count() as u64;
    assert!(immigration > 0, "the sample has some");
    let mut p = parse(Format::Ncic, &sample::ncic(&rows), &Columns::default()).expect("parses");
    let dropped = p.exclude(&[Category::Immigration]);
    assert_eq!(dropped, vec![(Category::Immigration, immigration)]);
    assert_eq!(p.entries.len() as u64, 2000 - immigration);
    assert!(p
        .entries
        .iter()
        .all(|e| e.category != Category::Immigration));
}

#[test]
fn bad_rows_are_all_counted_but_only_the_first_kept() {
    let file = "X\n".repeat(MAX_BAD_KEPT + 10);
    let p = parse(Format::Ncic, file.as_bytes(), &Columns::default()).expect("parses");
    assert_eq!(p.bad_rows, (MAX_BAD_KEPT + 10) as u64);
    assert_eq!(p.bad.len(), MAX_BAD_KEPT);
}

#[test]
fn sample_files_read_back_as_written() {
    let mut rows = sample::entries(300, 42);
    sample::plant(
        &mut rows,
        vec![sample::planted("8os1-23", "ca", Category::Amber, 1)],
        3,
    );
    let p = parse(Format::Ncic, &sample::ncic(&rows), &Columns::default()).expect("ncic");
    assert_eq!(p.entries, rows);
    assert!(p.entries.iter().any(|e| e.plate == "8OS123"));
    let c = parse(Format::Csv, &sample::csv(&rows), &Columns::default()).expect("csv");
    assert_eq!(c.entries, rows);
    let short: Vec<HotEntry> = rows
        .iter()
        .filter(|e| e.plate.len() <= 8)
        .cloned()
        .collect();
    let d = parse_with(
        Format::CaDoj,
        &sample::ca_doj(&short, "11/27/2026 23:05"),
        &stolen(),
    )
    .expect("ca-doj");
    assert_eq!(d.entries.len(), short.len());
    assert_eq!(d.bad_rows, 0);
    // Seeded: the same seed, the same file.
    assert_eq!(
        sample::ncic(&sample::entries(50, 9)),
        sample::ncic(&sample::entries(50, 9))
    );
    assert_ne!(
        sample::ncic(&sample::entries(50, 9)),
        sample::ncic(&sample::entries(50, 10))
    );
    let changed = sample::change(&rows, 10, 5);
    let differing = changed.iter().zip(&rows).filter(|(a, b)| a != b).count();
    assert!((1..=10).contains(&differing), "{differing}");
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), force: bool) {
        for format in [Format::Ncic, Format::CaDoj, Format::Csv] {
            let opts = ParseOptions { force, ..stolen() };
            let _ = parse_with(format, &bytes, &opts);
        }
    }

    #[test]
    fn parsers_never_panic_on_near_valid_lines(
        lines in proptest::collection::vec("[ -~]{0,70}", 0..20),
        header in prop_oneof![Just("DATE11/27/2026 23:05"), Just("LIC,LIS,MKE"), Just("")],
    ) {
        let text = format!("{header}\n{}\nTOTAL RECORD {}\n", lines.join("\n"), lines.len());
        for format in [Format::Ncic, Format::CaDoj, Format::Csv] {
            if let Ok(p) = parse_with(format, text.as_bytes(), &stolen()) {
                prop_assert!(p.entries.len() as u64 + p.bad_rows == p.rows);
                for e in &p.entries {
                    prop_assert!(!e.plate.is_empty() && e.plate.len() <= MAX_PLATE_LEN);
                    prop_assert!(e.plate.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
                }
            }
        }
    }
}
