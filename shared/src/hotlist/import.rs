//! Parsers of the list files agencies receive: NCIC fixed-width extracts,
//! California DOJ `.tbl` files and delimited CSV with NCIC field codes.
//!
//! Every parser works on the file's bytes, line by line (LF or CRLF), and
//! never panics: a row it cannot read is skipped and reported with its
//! 1-based line number ([`BadRow`]); a file it cannot read at all (no
//! header, a footer count that does not match, too big) is an
//! [`ImportError`]. Sizes are bounded before anything is kept:
//! [`MAX_FILE_BYTES`], [`MAX_ROWS`], [`MAX_LINE`], [`MAX_BAD_KEPT`].
//!
//! Plates are normalised to A–Z and 0–9 (spaces and dashes dropped,
//! letters upper-cased), 1..=[`MAX_PLATE_LEN`]; any other character makes
//! the row bad. Text fields are trimmed, stripped of control characters
//! and cut to [`MAX_ENTRY_TEXT`] characters.
//!
//! # NCIC extract (`ncic`), fixed width, 0-based byte columns
//!
//! | columns   | field                                                   |
//! |-----------|---------------------------------------------------------|
//! | `[0]`     | list type, [`Category::from_code`] (`V`, `P`, `A`, `W`, …) |
//! | `[1:10]`  | NIC (its nine digits; column 0 is its letter)           |
//! | `[10:19]` | ORI (nine characters)                                   |
//! | `[19:27]` | date of entry (`YYYYMMDD`, kept as written)             |
//! | `[27:37]` | plate (LIC, ten characters, space padded)               |
//! | `[37:39]` | state (LIS)                                             |
//! | `[39:43]` | plate (tag) expiry year (LIY)                           |
//! | `[43:47]` | vehicle year (VYR)                                      |
//! | `[47:51]` | make (VMA, NCIC's four-character code)                  |
//! | `[51:54]` | model (VMO, three characters)                           |
//! | `[54:61]` | colour (VCO, `BLK` or `BLK/WHI`)                        |
//!
//! Columns 0 to 27 and the plate are required (a line of 28 bytes or
//! more); trailing fields may be cut short. The widths after the state are
//! ours (the public importer this follows names the fields, not their
//! widths); they are NCIC's field lengths for VYR, VMA, VMO and VCO.
//!
//! # California DOJ (`ca-doj`: `svs`, `slr`, `sfr` `.tbl` files)
//!
//! A header line `DATEmm/dd/yyyy hh:mm`; records with the plate at
//! `[0:8]`, state `[8:10]`, county `[10:12]`, date of loss `[12:]`; a footer
//! `TOTAL RECORD nnnnnnn` whose count must equal the records read (good
//! and bad), else [`ImportError::FooterMismatch`] — unless forced, when it
//! becomes a warning. The file does not say its category: the file kind
//! does (svs stolen vehicle, slr stolen plate, sfr felony), given as
//! [`ParseOptions::category`].
//!
//! # CSV (`csv`)
//!
//! A header row of NCIC field codes (LIC, LIS, LIT, LIY, VMA, VMO, VYR,
//! VCO, VIN, NIC, ORI, OCA, MKE, DOT, MIS; case-insensitive); other
//! headers are mapped with [`Columns`] (`PLATE=LIC,ST=LIS`) or ignored.
//! Comma separated (or `|` or tab, when the header has those and no
//! comma); fields may be quoted (`"a, b"`, `""` for a quote). MKE, the
//! message key, gives the category ([`category_of_mke`]); without it,
//! [`ParseOptions::category`] or `Other`.

use super::{Category, HotEntry, MAX_ENTRY_TEXT, MAX_PLATE_LEN};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Ncic,
    CaDoj,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ncic => "ncic",
            Format::CaDoj => "ca-doj",
            Format::Csv => "csv",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest file parsed.
pub const MAX_FILE_BYTES: usize = 1 << 30;
/// Most data rows in a file.
pub const MAX_ROWS: u64 = 5_000_000;
/// Longest line; a longer one is a bad row.
pub const MAX_LINE: usize = 4096;
/// Bad rows kept with their reasons (all are counted in [`Parsed::bad_rows`]).
pub const MAX_BAD_KEPT: usize = 1000;

/// A row that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRow {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub entries: Vec<HotEntry>,
    /// The first [`MAX_BAD_KEPT`] bad rows.
    pub bad: Vec<BadRow>,
    /// Data rows seen (good and bad).
    pub rows: u64,
    /// Bad rows, all of them.
    pub bad_rows: u64,
    /// What a forced parse let through (a footer count that does not
    /// match, a missing footer).
    pub warnings: Vec<String>,
}

impl Parsed {
    fn bad(&mut self, line: usize, reason: impl Into<String>) {
        self.bad_rows += 1;
        if self.bad.len() < MAX_BAD_KEPT {
            self.bad.push(BadRow {
                line,
                reason: reason.into(),
            });
        }
    }

    fn row(&mut self) -> Result<(), ImportError> {
        self.rows += 1;
        if self.rows > MAX_ROWS {
            return Err(ImportError::TooManyRows { max: MAX_ROWS });
        }
        Ok(())
    }

    /// Drop the entries of the `excluded` categories; how many of each.
    pub fn exclude(&mut self, excluded: &[Category]) -> Vec<(Category, u64)> {
        let mut counts: Vec<(Category, u64)> = Vec::new();
        self.entries.retain(|e| {
            if !excluded.contains(&e.category) {
                return true;
            }
            match counts.iter_mut().find(|(c, _)| *c == e.category) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.category, 1)),
            }
            false
        });
        counts.sort();
        counts
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Invalid(String),
    #[error("the file is {size} bytes; at most {max} are parsed")]
    TooLarge { size: usize, max: usize },
    #[error("the file has more than {max} rows")]
    TooManyRows { max: u64 },
    #[error("the footer says {declared} records but the file has {found}: the file is cut short or corrupt")]
    FooterMismatch { declared: u64, found: u64 },
    #[error("no footer `TOTAL RECORD n`: the file may be cut short")]
    NoFooter,
    #[error("no header: {0}")]
    NoHeader(String),
    #[error("a ca-doj file does not say its category: give it (svs stolen-vehicle, slr stolen-plate, sfr felony)")]
    NeedsCategory,
    #[error("column mapping: {0}")]
    BadColumns(String),
}

/// The NCIC field codes a CSV header may name.
pub const FIELD_CODES: [&str; 15] = [
    "LIC", "LIS", "LIT", "LIY", "VMA", "VMO", "VYR", "VCO", "VIN", "NIC", "ORI", "OCA", "MKE",
    "DOT", "MIS",
];

/// CSV column mapping: (header as in the file, NCIC field code) pairs,
/// e.g. from `PLATE=LIC,ST=LIS`.
#[derive(Debug, Clone, Default)]
pub struct Columns(pub Vec<(String, String)>);

impl Columns {
    /// Read `HEADER=CODE,HEADER=CODE`; codes must be NCIC field codes.
    pub fn parse(spec: &str) -> Result<Columns, ImportError> {
        let mut out = Vec::new();
        if spec.len() > 4096 {
            return Err(ImportError::BadColumns("longer than 4096 bytes".into()));
        }
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (header, code) = part.split_once('=').ok_or_else(|| {
                ImportError::BadColumns(format!("{part:?} is not HEADER=CODE (e.g. PLATE=LIC)"))
            })?;
            let code = code.trim().to_ascii_uppercase();
            if !FIELD_CODES.contains(&code.as_str()) {
                return Err(ImportError::BadColumns(format!(
                    "{code:?} is not an NCIC field code ({})",
                    FIELD_CODES.join(", ")
                )));
            }
            out.push((header.trim().to_owned(), code));
        }
        Ok(Columns(out))
    }
}

/// How to read a file beyond its format.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    pub columns: Columns,
    /// The category of every row of formats that carry none (`ca-doj`),
    /// and of CSV rows without a message key.
    pub category: Option<Category>,
    /// Take a `ca-doj` file whose footer is missing or does not match the
    /// records (a warning instead of an error).
    pub force: bool,
}

/// Parse with the defaults of [`ParseOptions`] and these columns.
pub fn parse(format: Format, bytes: &[u8], columns: &Columns) -> Result<Parsed, ImportError> {
    parse_with(
        format,
        bytes,
        &ParseOptions {
            columns: columns.clone(),
            ..ParseOptions::default()
        },
    )
}

/// Parse a list file.
pub fn parse_with(
    format: Format,
    bytes: &[u8],
    options: &ParseOptions,
) -> Result<Parsed, ImportError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ImportError::TooLarge {
            size: bytes.len(),
            max: MAX_FILE_BYTES,
        });
    }
    match format {
        Format::Ncic => parse_ncic(bytes),
        Format::CaDoj => parse_ca_doj(bytes, options),
        Format::Csv => parse_csv(bytes, options),
    }
}

/// A plate as lists and reads compare it: A–Z and 0–9 only, upper case.
pub fn normalise_plate(raw: &str) -> String {
    raw.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The plate of a row, or why it is bad.
fn plate_of(raw: &str) -> Result<String, String> {
    if let Some(c) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == ' ' || *c == '-'))
    {
        return Err(format!("the plate {:?} has {c:?}", text(raw)));
    }
    let p = normalise_plate(raw);
    if p.is_empty() {
        return Err("no plate".into());
    }
    if p.len() > MAX_PLATE_LEN {
        return Err(format!(
            "the plate {p:?} is longer than {MAX_PLATE_LEN} characters"
        ));
    }
    Ok(p)
}

/// A text field: trimmed, no control characters, at most
/// [`MAX_ENTRY_TEXT`] characters.
fn text(raw: &str) -> String {
    raw.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ENTRY_TEXT)
        .collect()
}

/// A state: two letters, upper case; empty if none.
fn state_of(raw: &str) -> Result<String, String> {
    let s = raw.trim().to_ascii_uppercase();
    if s.is_empty() || (s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())) {
        Ok(s)
    } else {
        Err(format!("the state {:?} is not two letters", text(raw)))
    }
}

/// The file's lines with their 1-based numbers, without line endings.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|b| *b == b'\n')
        .filter(move |_| !empty)
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

/// Bytes `[from:to]` of an ASCII line, cut at its end.
fn col(line: &str, from: usize, to: usize) -> &str {
    let end = to.min(line.len());
    line.get(from.min(end)..end).unwrap_or("")
}

/// A line as ASCII text, or why not.
fn ascii(line: &[u8]) -> Result<&str, String> {
    if line.len() > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    if !line.is_ascii() {
        return Err("not ASCII (a fixed-width file must be)".into());
    }
    std::str::from_utf8(line).map_err(|e| e.to_string())
}

fn parse_ncic(bytes: &[u8]) -> Result<Parsed, ImportError> {
    let mut out = Parsed::default();
    for (n, raw) in lines(bytes) {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.row()?;
        match ncic_row(raw) {
            Ok(e) => out.entries.push(e),
            Err(reason) => out.bad(n, reason),
        }
    }
    Ok(out)
}

fn ncic_row(raw: &[u8]) -> Result<HotEntry, String> {
    let line = ascii(raw)?;
    if line.len() < 28 {
        return Err(format!(
            "{} bytes: an NCIC line has its plate at columns 27 to 37",
            line.len()
        ));
    }
    let code = line.as_bytes()[0] as char;
    if !code.is_ascii_alphabetic() {
        return Err(format!("list type {code:?} is not a letter"));
    }
    Ok(HotEntry {
        category: Category::from_code(code),
        nic: text(&format!("{}{}", code, col(line, 1, 10).trim())),
        ori: text(col(line, 10, 19)),
        entered: text(col(line, 19, 27)),
        plate: plate_of(col(line, 27, 37))?,
        state: state_of(col(line, 37, 39))?,
        plate_year: text(col(line, 39, 43)),
        vehicle_year: text(col(line, 43, 47)),
        make: text(col(line, 47, 51)),
        model: text(col(line, 51, 54)),
        colour: text(col(line, 54, 61)),
        ..HotEntry::default()
    })
}

/// Whether `s` is `mm/dd/yyyy hh:mm`.
fn is_doj_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b.iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b'/',
            10 => *c == b' ',
            13 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

fn parse_ca_doj(bytes: &[u8], options: &ParseOptions) -> Result<Parsed, ImportError> {
    let category = options.category.ok_or(ImportError::NeedsCategory)?;
    let mut out = Parsed::default();
    let mut it = lines(bytes).filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    match it.next() {
        Some((_, l)) => {
            let head = ascii(l).map_err(ImportError::NoHeader)?.trim();
            let stamp = head.strip_prefix("DATE").map(str::trim);
            if !stamp.is_some_and(is_doj_stamp) {
                return Err(ImportError::NoHeader(format!(
                    "a ca-doj file starts with `DATEmm/dd/yyyy hh:mm`, not {:?}",
                    text(&head.chars().take(40).collect::<String>())
                )));
            }
        }
        None => return Err(ImportError::NoHeader("the file is empty".into())),
    }
    let mut declared: Option<u64> = None;
    for (n, raw) in it {
        if let Some(rest) = raw.strip_prefix(b"TOTAL RECORD") {
            let count = std::str::from_utf8(rest)
                .ok()
                .map(|s| s.trim().trim_start_matches('S').trim())
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ImportError::Invalid(format!(
                        "line {n}: the footer's count is not a number: {:?}",
                        String::from_utf8_lossy(&raw[..raw.len().min(60)])
                    ))
                })?;
            if declared.is_some() {
                return Err(ImportError::Invalid(format!("line {n}: a second footer")));
            }
            declared = Some(count);
            continue;
        }
        out.row()?;
        if declared.is_some() {
            out.bad(n, "a record after the footer");
            continue;
        }
        match doj_row(raw, category) {
            Ok(e) => out.entries.push(e),
            Err(reason) => out.bad(n, reason),
        }
    }
    match declared {
        Some(d) if d == out.rows => {}
        Some(d) if options.force => out.warnings.push(
            ImportError::FooterMismatch {
                declared: d,
                found: out.rows,
            }
            .to_string(),
        ),
        Some(d) => {
            return Err(ImportError::FooterMismatch {
                declared: d,
                found: out.rows,
            })
        }
        None if options.force => out.warnings.push(ImportError::NoFooter.to_string()),
        None => return Err(ImportError::NoFooter),
    }
    Ok(out)
}

fn doj_row(raw: &[u8], category: Category) -> Result<HotEntry, String> {
    let line = ascii(raw)?;
    let county = text(col(line, 10, 12));
    Ok(HotEntry {
        plate: plate_of(col(line, 0, 8))?,
        state: state_of(col(line, 8, 10))?,
        category,
        entered: text(col(line, 12, line.len())),
        note: if county.is_empty() {
            String::new()
        } else {
            format!("county {county}")
        },
        ..HotEntry::default()
    })
}

/// The category an NCIC message key (MKE) or a category word names:
/// a one-letter list type (`V`), an enter/query message key (`EV`, `QV`,
/// `EL`, `EW`, `EMD`, `EPO`, `EGM`, …), a category name
/// (`stolen-vehicle`), or words (`STOLEN PLATE`). `None` if none fits.
pub fn category_of_mke(raw: &str) -> Option<Category> {
    let s = raw.trim().to_ascii_uppercase();
    if s.is_empty() {
        return None;
    }
    if let Some(c) = Category::from_name(&s.to_ascii_lowercase()) {
        return Some(c);
    }
    if s.len() == 1 {
        let c = Category::from_code(s.chars().next()?);
        return (c != Category::Other || s == "O").then_some(c);
    }
    let key = s
        .strip_prefix('E')
        .or_else(|| s.strip_prefix('Q'))
        .filter(|k| !k.is_empty() && s.len() <= 4)
        .unwrap_or(&s);
    let by_key = match key {
        "V" | "VS" => Some(Category::StolenVehicle),
        "L" | "LP" => Some(Category::StolenPlate),
        "W" | "WP" => Some(Category::Wanted),
        "M" | "MD" | "MU" | "MJ" | "MI" | "MO" => Some(Category::Missing),
        "PO" => Some(Category::ProtectionOrder),
        "GM" | "GG" => Some(Category::Gang),
        "IV" | "DF" => Some(Category::Immigration),
        "SOR" | "SO" => Some(Category::SexOffender),
        "KST" | "TS" => Some(Category::Terrorism),
        "AA" | "AMB" => Some(Category::Amber),
        "F" | "FE" => Some(Category::Felony),
        _ => None,
    };
    if by_key.is_some() {
        return by_key;
    }
    let has = |w: &str| s.contains(w);
    Some(if has("AMBER") {
        Category::Amber
    } else if has("STOLEN") && (has("PLATE") || has("LIC") || has("TAG")) {
        Category::StolenPlate
    } else if has("STOLEN") {
        Category::StolenVehicle
    } else if has("WANT") || has("WARRANT") {
        Category::Wanted
    } else if has("MISSING") {
        Category::Missing
    } else if has("FELON") {
        Category::Felony
    } else if has("PROTECT") {
        Category::ProtectionOrder
    } else if has("GANG") {
        Category::Gang
    } else if has("IMMIGR") || has("DEPORT") {
        Category::Immigration
    } else if has("SEX") {
        Category::SexOffender
    } else if has("TERROR") {
        Category::Terrorism
    } else {
        return None;
    })
}

/// Split one delimited line; quoted fields may hold the delimiter and
/// `""` for a quote. `None` for an unterminated quote.
fn split_fields(line: &str, delim: char) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == delim {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
            continue;
        } else if c == '"' && at_start && cur.trim().is_empty() {
            cur.clear();
            quoted = true;
        } else {
            cur.push(c);
        }
        at_start = false;
    }
    if quoted {
        return None;
    }
    fields.push(cur);
    Some(fields)
}

fn parse_csv(bytes: &[u8], options: &ParseOptions) -> Result<Parsed, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut it = lines(bytes).filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    let Some((hn, header)) = it.next() else {
        return Err(ImportError::NoHeader("the file is empty".into()));
    };
    if header.len() > MAX_LINE {
        return Err(ImportError::NoHeader(format!(
            "the header (line {hn}) is longer than {MAX_LINE} bytes"
        )));
    }
    let header = std::str::from_utf8(header)
        .map_err(|_| ImportError::NoHeader(format!("the header (line {hn}) is not UTF-8")))?;
    let delim = if header.contains(',') {
        ','
    } else if header.contains('|') {
        '|'
    } else if header.contains('\t') {
        '\t'
    } else {
        ','
    };
    let names = split_fields(header, delim).ok_or_else(|| {
        ImportError::NoHeader(format!("the header (line {hn}) has an unterminated quote"))
    })?;
    // Each column's field code, if it has one.
    let codes: Vec<Option<&'static str>> = names
        .iter()
        .map(|h| {
            let h = h.trim();
            let mapped = options
                .columns
                .0
                .iter()
                .find(|(from, _)| from.eq_ignore_ascii_case(h))
                .map_or(h, |(_, code)| code.as_str());
            FIELD_CODES
                .iter()
                .find(|c| c.eq_ignore_ascii_case(mapped))
                .copied()
        })
        .collect();
    for (from, _) in &options.columns.0 {
        if !names.iter().any(|h| h.trim().eq_ignore_ascii_case(from)) {
            return Err(ImportError::BadColumns(format!(
                "the header has no column {from:?}"
            )));
        }
    }
    if !codes.contains(&Some("LIC")) {
        return Err(ImportError::NoHeader(format!(
            "the header (line {hn}) has no LIC (plate) column; map one with --columns HEADER=LIC"
        )));
    }
    let mut out = Parsed::default();
    for (n, raw) in it {
        out.row()?;
        match csv_row(raw, delim, &codes, options.category) {
            Ok(e) => out.entries.push(e),
            Err(reason) => out.bad(n, reason),
        }
    }
    Ok(out)
}

fn csv_row(
    raw: &[u8],
    delim: char,
    codes: &[Option<&'static str>],
    default: Option<Category>,
) -> Result<HotEntry, String> {
    if raw.len() > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    let line = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let fields = split_fields(line, delim).ok_or("an unterminated quote")?;
    if fields.len() != codes.len() {
        return Err(format!(
            "{} fields where the header has {}",
            fields.len(),
            codes.len()
        ));
    }
    let mut e = HotEntry {
        category: default.unwrap_or(Category::Other),
        ..HotEntry::default()
    };
    let mut plate = None;
    for (code, value) in codes.iter().zip(&fields) {
        let Some(code) = code else { continue };
        match *code {
            "LIC" => plate = Some(plate_of(value)?),
            "LIS" => e.state = state_of(value)?,
            "LIT" => e.plate_type = text(value),
            "LIY" => e.plate_year = text(value),
            "VMA" => e.make = text(value),
            "VMO" => e.model = text(value),
            "VYR" => e.vehicle_year = text(value),
            "VCO" => e.colour = text(value),
            "VIN" => e.vin = text(value),
            "NIC" => e.nic = text(value),
            "ORI" => e.ori = text(value),
            "OCA" => e.oca = text(value),
            "DOT" => e.entered = text(value),
            "MIS" => e.note = text(value),
            "MKE" => {
                if !value.trim().is_empty() {
                    e.category = category_of_mke(value).unwrap_or(Category::Other);
                }
            }
            _ => {}
        }
    }
    e.plate = plate.ok_or("no plate")?;
    Ok(e)
}

#[cfg(test)]
mod tests;
