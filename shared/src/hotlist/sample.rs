//! Realistic list files for tests, benchmarks and the demo: seeded, so the
//! same seed gives the same file on every machine.
//!
//! [`entries`] makes N rows (NCIC category mix, two-letter states, plates
//! of the shapes states issue, makes, models, colours, agencies); [`plant`]
//! puts given plates in them (the demo lists a real photo's plate);
//! [`change`] replaces some rows, as the next day's extract would; the
//! writers [`ncic`], [`ca_doj`] and [`csv`] lay rows out exactly as
//! [`super::import`] reads them.

use super::{Category, HotEntry};

/// A small, fast, seeded generator (SplitMix64): stable across versions
/// of any crate, which a benchmark's input must be.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from.get(self.below(from.len())).copied().unwrap_or("")
    }
}

const STATES: [&str; 12] = [
    "CA", "CA", "CA", "CA", "NV", "AZ", "OR", "WA", "TX", "NY", "FL", "UT",
];
const MAKES: [(&str, &[&str]); 8] = [
    ("TOYT", &["CAM", "COR", "RAV", "TAC"]),
    ("HOND", &["ACC", "CIV", "CRV", "ODY"]),
    ("FORD", &["F15", "FOC", "ESC", "MUS"]),
    ("CHEV", &["MAL", "SIL", "EQU", "IMP"]),
    ("NISS", &["ALT", "SEN", "ROG"]),
    ("DODG", &["RAM", "CHA", "CAR"]),
    ("BMW", &["3SE", "5SE", "X5"]),
    ("HYUN", &["ELA", "SON", "TUC"]),
];
const COLOURS: [&str; 10] = [
    "BLK", "WHI", "SIL", "GRY", "BLU", "RED", "GRN", "TAN", "BLK/WHI", "MAR",
];
const ORIS: [&str; 6] = [
    "CA0194200",
    "CA0190000",
    "CA0370000",
    "NV0020000",
    "AZ0070000",
    "CA0010000",
];

/// The category mix of an NCIC extract: mostly stolen vehicles and plates.
fn category(rng: &mut Rng) -> Category {
    match rng.below(100) {
        0..=54 => Category::StolenVehicle,
        55..=79 => Category::StolenPlate,
        80..=89 => Category::Wanted,
        90..=93 => Category::Felony,
        94..=95 => Category::Missing,
        96 => Category::ProtectionOrder,
        97 => Category::Gang,
        98 => Category::Immigration,
        _ => Category::Amber,
    }
}

/// A plate of a shape states issue: `7ABC123`, `ABC1234`, `123ABC`, `4AB5678`.
fn plate(rng: &mut Rng) -> String {
    let letter = |rng: &mut Rng| (b'A' + rng.below(26) as u8) as char;
    let digit = |rng: &mut Rng| (b'0' + rng.below(10) as u8) as char;
    let shape: &[u8] = match rng.below(4) {
        0 => b"9AAA999",
        1 => b"AAA9999",
        2 => b"999AAA",
        _ => b"9AA9999",
    };
    shape
        .iter()
        .map(|s| if *s == b'A' { letter(rng) } else { digit(rng) })
        .collect()
}

/// One realistic row.
pub fn entry(rng: &mut Rng) -> HotEntry {
    let category = category(rng);
    let (make, models) = MAKES[rng.below(MAKES.len())];
    let year = 1995 + rng.below(31);
    HotEntry {
        plate: plate(rng),
        state: rng.pick(&STATES).to_owned(),
        category,
        plate_type: String::new(),
        plate_year: format!("{}", 2024 + rng.below(4)),
        vehicle_year: format!("{year}"),
        make: make.to_owned(),
        model: rng.pick(models).to_owned(),
        colour: rng.pick(&COLOURS).to_owned(),
        vin: String::new(),
        nic: format!("{}{:09}", category.code(), rng.below(1_000_000_000)),
        ori: rng.pick(&ORIS).to_owned(),
        oca: String::new(),
        entered: format!("2026{:02}{:02}", 1 + rng.below(11), 1 + rng.below(28)),
        note: String::new(),
    }
}

/// `n` rows from `seed`.
pub fn entries(n: usize, seed: u64) -> Vec<HotEntry> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| entry(&mut rng)).collect()
}

/// A row for `plate` (normalised) in `state`, listed as `category`, with
/// the rest made up from `seed`: what the demo and end-to-end tests put
/// in a list so a real photo's plate hits.
pub fn planted(plate: &str, state: &str, category: Category, seed: u64) -> HotEntry {
    let mut rng = Rng::new(seed);
    let mut e = entry(&mut rng);
    e.plate = super::import::normalise_plate(plate);
    e.state = state.to_ascii_uppercase();
    e.category = category;
    e.nic = format!("{}{:09}", category.code(), rng.below(1_000_000_000));
    e
}

/// Put `planted` rows into `rows` at seeded places.
pub fn plant(rows: &mut Vec<HotEntry>, planted: Vec<HotEntry>, seed: u64) {
    let mut rng = Rng::new(seed);
    for e in planted {
        let at = rng.below(rows.len() + 1);
        rows.insert(at, e);
    }
}

/// The next extract: `changes` rows replaced by new ones (as many
/// recoveries as new thefts), chosen from `seed`.
pub fn change(rows: &[HotEntry], changes: usize, seed: u64) -> Vec<HotEntry> {
    let mut rng = Rng::new(seed);
    let mut out = rows.to_vec();
    if out.is_empty() {
        return out;
    }
    for _ in 0..changes {
        let i = rng.below(out.len());
        out[i] = entry(&mut rng);
    }
    out
}

fn pad(out: &mut String, s: &str, width: usize) {
    let s: String = s.chars().take(width).collect();
    out.push_str(&s);
    for _ in s.chars().count()..width {
        out.push(' ');
    }
}

/// One NCIC fixed-width line (see [`super::import`] for the columns).
pub fn ncic_line(e: &HotEntry) -> String {
    let mut l = String::with_capacity(64);
    l.push(e.category.code());
    // The NIC's letter is the list type in column 0.
    let nic = e.nic.get(1..).unwrap_or("");
    pad(&mut l, nic, 9);
    pad(&mut l, &e.ori, 9);
    pad(&mut l, &e.entered, 8);
    pad(&mut l, &e.plate, 10);
    pad(&mut l, &e.state, 2);
    pad(&mut l, &e.plate_year, 4);
    pad(&mut l, &e.vehicle_year, 4);
    pad(&mut l, &e.make, 4);
    pad(&mut l, &e.model, 3);
    pad(&mut l, &e.colour, 7);
    l.truncate(l.trim_end().len());
    l
}

/// An NCIC extract of `rows`.
pub fn ncic(rows: &[HotEntry]) -> Vec<u8> {
    let mut out = String::with_capacity(rows.len() * 62);
    for e in rows {
        out.push_str(&ncic_line(e));
        out.push('\n');
    }
    out.into_bytes()
}

/// A California DOJ `.tbl` file of `rows` (plates of at most 8
/// characters), stamped `stamp` (`mm/dd/yyyy hh:mm`), with its footer.
pub fn ca_doj(rows: &[HotEntry], stamp: &str) -> Vec<u8> {
    let mut out = String::with_capacity(rows.len() * 24 + 64);
    out.push_str("DATE");
    out.push_str(stamp);
    out.push('\n');
    for e in rows {
        pad(&mut out, &e.plate, 8);
        pad(&mut out, &e.state, 2);
        pad(&mut out, "19", 2);
        out.push_str(&e.entered);
        out.push('\n');
    }
    out.push_str(&format!("TOTAL RECORD {:07}\n", rows.len()));
    out.into_bytes()
}

/// A CSV file of `rows` with an NCIC field-code header.
pub fn csv(rows: &[HotEntry]) -> Vec<u8> {
    let field = |s: &str| {
        if s.contains([',', '"']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from("MKE,LIC,LIS,LIT,LIY,VYR,VMA,VMO,VCO,VIN,NIC,ORI,OCA,DOT,MIS\n");
    for e in rows {
        let cols = [
            e.category.code().to_string(),
            e.plate.clone(),
            e.state.clone(),
            e.plate_type.clone(),
            e.plate_year.clone(),
            e.vehicle_year.clone(),
            e.make.clone(),
            e.model.clone(),
            e.colour.clone(),
            e.vin.clone(),
            e.nic.clone(),
            e.ori.clone(),
            e.oca.clone(),
            e.entered.clone(),
            e.note.clone(),
        ];
        let line: Vec<String> = cols.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out.into_bytes()
}
