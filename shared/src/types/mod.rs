//! Plain data types of a plate read, with the bounds the wire and the log
//! enforce on them.

pub mod issuer;

use serde::{Deserialize, Serialize};
use std::fmt;

pub use issuer::{is_us_state, Issuer, StateReading, US_STATES};

/// Longest device name a certificate or log entry may carry.
pub const MAX_NAME_LEN: usize = 64;
/// Longest plate text (after normalisation: A–Z, 0–9).
pub const MAX_PLATE_LEN: usize = 12;
/// Longest free-text field (camera id, model id, region, reason).
pub const MAX_TEXT_LEN: usize = 128;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} has a character outside {allowed}")]
    BadChar {
        field: &'static str,
        allowed: &'static str,
    },
    #[error("{field} is out of range")]
    OutOfRange { field: &'static str },
}

pub(crate) fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), InvalidValue> {
    if s.len() > max {
        return Err(InvalidValue::TooLong { field, max });
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidValue::BadChar {
            field,
            allowed: "printable characters",
        });
    }
    Ok(())
}

/// A node's name, as written in its certificate's common name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidValue> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidValue::Empty { field: "device id" });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidValue::TooLong {
                field: "device id",
                max: MAX_NAME_LEN,
            });
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(InvalidValue::BadChar {
                field: "device id",
                allowed: "A-Z a-z 0-9 - _ .",
            });
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

/// What kind of node a certificate was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceKind {
    /// Fixed-pole camera, mostly online.
    Pole,
    /// Patrol vehicle, in and out of coverage.
    Vehicle,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Pole => "pole",
            DeviceKind::Vehicle => "vehicle",
        }
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pole" => Ok(DeviceKind::Pole),
            "vehicle" => Ok(DeviceKind::Vehicle),
            _ => Err(InvalidValue::BadChar {
                field: "device kind",
                allowed: "pole | vehicle",
            }),
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub const ZERO: Hash32 = Hash32([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, InvalidValue> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| InvalidValue::BadChar {
            field: "hash",
            allowed: "64 hex digits",
        })?;
        Ok(Hash32(out))
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({}…)", &self.to_hex()[..12])
    }
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn to_system_time(self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0)
    }
}

impl fmt::Display for UnixMillis {
    /// RFC 3339, UTC, millisecond precision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1000;
        let ms = self.0 % 1000;
        let (y, mo, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
        let rem = secs % 86_400;
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where the capture time came from: auditors weigh a read's time by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeSource {
    /// GPS receiver time.
    Gps,
    /// System clock disciplined by NTP.
    Ntp,
    /// System clock with no known synchronisation.
    LocalClock,
    /// The photo's own EXIF `DateTimeOriginal` (the camera's clock).
    Exif,
    /// The image file's modification time.
    FileTime,
    /// A live camera's own clock: the wall-clock (NTP) time its RTCP
    /// sender reports give for the frame's RTP timestamp.
    CameraClock,
}

/// Where a read was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Location {
    /// A fixed, surveyed site (pole cameras).
    Site { site_id: String },
    /// A measured GPS fix: degrees × 10⁷, horizontal accuracy in
    /// centimetres ([`ACCURACY_UNKNOWN`] when the receiver gave none).
    Gps {
        lat_e7: i32,
        lon_e7: i32,
        accuracy_cm: u32,
    },
    /// A position written in the node's configuration, not measured when the
    /// read was taken: degrees × 10⁷, the accuracy the configuration claims.
    Configured {
        lat_e7: i32,
        lon_e7: i32,
        accuracy_cm: u32,
    },
    /// No position known: a vehicle without a current GPS fix.
    Unknown,
}

/// `accuracy_cm` of a fix whose receiver reported no error estimate.
pub const ACCURACY_UNKNOWN: u32 = u32::MAX;

impl Location {
    /// Whether the position was measured when the read was taken.
    pub fn is_measured(&self) -> bool {
        matches!(self, Location::Gps { .. })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deg = |e7: i32| f64::from(e7) / 1e7;
        let acc = |cm: u32| {
            if cm == ACCURACY_UNKNOWN {
                "unknown accuracy".to_owned()
            } else {
                format!("±{:.1} m", f64::from(cm) / 100.0)
            }
        };
        match self {
            Location::Site { site_id } => write!(f, "site {site_id}"),
            Location::Gps {
                lat_e7,
                lon_e7,
                accuracy_cm,
            } => write!(
                f,
                "gps {:.7},{:.7} {}",
                deg(*lat_e7),
                deg(*lon_e7),
                acc(*accuracy_cm)
            ),
            Location::Configured {
                lat_e7,
                lon_e7,
                accuracy_cm,
            } => write!(
                f,
                "configured {:.7},{:.7} {}",
                deg(*lat_e7),
                deg(*lon_e7),
                acc(*accuracy_cm)
            ),
            Location::Unknown => f.write_str("unknown"),
        }
    }
}

impl TimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Gps => "gps",
            TimeSource::Ntp => "ntp-synced-clock",
            TimeSource::LocalClock => "local-clock",
            TimeSource::Exif => "exif",
            TimeSource::FileTime => "file-time",
            TimeSource::CameraClock => "camera-clock",
        }
    }
}

impl fmt::Display for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Confidence in 1/10000 (0 = none, 10000 = certain): integers keep the
/// canonical encoding free of float edge cases.
pub type Confidence = u16;
pub const CONFIDENCE_ONE: Confidence = 10_000;

/// Convert a probability in [0, 1] to [`Confidence`], clamping anything else.
pub fn confidence_from_f32(p: f32) -> Confidence {
    if p.is_nan() {
        return 0;
    }
    (p.clamp(0.0, 1.0) * f32::from(CONFIDENCE_ONE)).round() as Confidence
}

/// The content of one plate read: everything a purge deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadContent {
    pub location: Location,
    pub camera: String,
    /// Normalised plate text: A–Z and 0–9 only.
    pub plate: String,
    pub confidence: Confidence,
    /// One confidence per character of `plate`.
    pub char_confidence: Vec<Confidence>,
    /// Who issued the plate as read: the region (e.g. "United States")
    /// and, for US plates, the state reading (see [`issuer`]).
    pub issuer: Issuer,
    pub detector_model: String,
    pub ocr_model: String,
    /// SHA-256 of the plate crop JPEG.
    pub crop_hash: Hash32,
    /// SHA-256 of the overview (full frame) JPEG.
    pub overview_hash: Hash32,
}

impl ReadContent {
    /// Check every bound; a decoded or freshly built read must pass.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        match &self.location {
            Location::Site { site_id } => {
                if site_id.is_empty() {
                    return Err(InvalidValue::Empty { field: "site id" });
                }
                check_text("site id", site_id, MAX_TEXT_LEN)?;
            }
            Location::Gps { lat_e7, lon_e7, .. } | Location::Configured { lat_e7, lon_e7, .. } => {
                if lat_e7.unsigned_abs() > 900_000_000 {
                    return Err(InvalidValue::OutOfRange { field: "latitude" });
                }
                if lon_e7.unsigned_abs() > 1_800_000_000 {
                    return Err(InvalidValue::OutOfRange { field: "longitude" });
                }
            }
            Location::Unknown => {}
        }
        check_text("camera", &self.camera, MAX_TEXT_LEN)?;
        if self.plate.is_empty() {
            return Err(InvalidValue::Empty { field: "plate" });
        }
        if self.plate.len() > MAX_PLATE_LEN {
            return Err(InvalidValue::TooLong {
                field: "plate",
                max: MAX_PLATE_LEN,
            });
        }
        if !self
            .plate
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(InvalidValue::BadChar {
                field: "plate",
                allowed: "A-Z 0-9",
            });
        }
        if self.confidence > CONFIDENCE_ONE
            || self.char_confidence.iter().any(|&c| c > CONFIDENCE_ONE)
        {
            return Err(InvalidValue::OutOfRange {
                field: "confidence",
            });
        }
        if self.char_confidence.len() != self.plate.len() {
            return Err(InvalidValue::OutOfRange {
                field: "per-character confidence count",
            });
        }
        self.issuer.validate()?;
        check_text("detector model", &self.detector_model, MAX_TEXT_LEN)?;
        check_text("ocr model", &self.ocr_model, MAX_TEXT_LEN)?;
        Ok(())
    }
}

/// Normalise plate text as people type it: drop spaces and dashes, upper-case.
pub fn normalise_plate(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_checked() {
        assert!(DeviceId::new("pole-07").is_ok());
        assert!(DeviceId::new("").is_err());
        assert!(DeviceId::new("a b").is_err());
        assert!(DeviceId::new("x".repeat(65)).is_err());
    }

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(UnixMillis(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixMillis(1_795_868_054_123).to_string(),
            "2026-11-28T12:14:14.123Z"
        );
        assert_eq!(
            UnixMillis(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn new_provenance_variants_keep_the_old_indices() {
        // postcard writes a variant's index: the old ones must not move.
        let enc = |t: &TimeSource| postcard::to_allocvec(t).expect("encode");
        assert_eq!(enc(&TimeSource::Gps), [0]);
        assert_eq!(enc(&TimeSource::Ntp), [1]);
        assert_eq!(enc(&TimeSource::LocalClock), [2]);
        assert_eq!(enc(&TimeSource::Exif), [3]);
        assert_eq!(enc(&TimeSource::FileTime), [4]);
        assert_eq!(enc(&TimeSource::CameraClock), [5]);
        let loc = |l: &Location| postcard::to_allocvec(l).expect("encode")[0];
        assert_eq!(
            loc(&Location::Site {
                site_id: "s".into()
            }),
            0
        );
        let fix = (1, 2, 3);
        assert_eq!(
            loc(&Location::Gps {
                lat_e7: fix.0,
                lon_e7: fix.1,
                accuracy_cm: fix.2
            }),
            1
        );
        let configured = Location::Configured {
            lat_e7: 1,
            lon_e7: 2,
            accuracy_cm: 3,
        };
        assert_eq!(loc(&configured), 2);
        assert_eq!(loc(&Location::Unknown), 3);
        let back: Location =
            postcard::from_bytes(&postcard::to_allocvec(&configured).expect("encode"))
                .expect("decode");
        assert_eq!(back, configured);
        assert!(!configured.is_measured());
    }

    #[test]
    fn plates_normalise() {
        assert_eq!(normalise_plate(" 7abc-123 "), "7ABC123");
    }
}
