//! Just enough EXIF to place a photo upright and in time: the orientation tag
//! (cameras and phones store pixels sideways and say so here) and the
//! original capture time. Input is the TIFF body of an APP1 `Exif` segment;
//! anything malformed reads as "absent", never as an error.

/// The EXIF orientation tag, 1..=8 (1 = upright). `None` when absent or invalid.
pub fn orientation(tiff: &[u8]) -> Option<u16> {
    let t = Tiff::new(tiff)?;
    let ifd0 = t.u32_at(4)? as usize;
    let v = t.find_short(ifd0, 0x0112)?;
    (1..=8).contains(&v).then_some(v)
}

/// `DateTimeOriginal` (or else `DateTime`) as "YYYY:MM:DD HH:MM:SS", with
/// the sub-second field appended as a fraction when present.
pub fn capture_time(tiff: &[u8]) -> Option<String> {
    let t = Tiff::new(tiff)?;
    let ifd0 = t.u32_at(4)? as usize;
    let exif_ifd = t.find_long(ifd0, 0x8769);
    let original = exif_ifd.and_then(|ifd| t.find_ascii(ifd as usize, 0x9003));
    let base = original.or_else(|| t.find_ascii(ifd0, 0x0132))?;
    let sub = exif_ifd.and_then(|ifd| t.find_ascii(ifd as usize, 0x9291));
    Some(match sub {
        Some(s) if !s.is_empty() => format!("{base}.{s}"),
        _ => base,
    })
}

/// The TIFF body of a JPEG's APP1 `Exif` segment, found by walking the
/// markers before the image data. `None` if absent or malformed.
pub fn jpeg_exif(jpeg: &[u8]) -> Option<&[u8]> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2usize;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        // Start of scan or end of image: no more metadata.
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if len < 2 {
            return None;
        }
        let body = jpeg.get(i + 4..i + 2 + len)?;
        if marker == 0xE1 {
            if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                return Some(tiff);
            }
        }
        i += 2 + len;
    }
    None
}

/// Seconds since the Unix epoch of an EXIF time "YYYY:MM:DD HH:MM:SS[.frac]",
/// taken as UTC (EXIF keeps local time without a zone).
pub fn parse_time(s: &str) -> Option<f64> {
    let (date, rest) = s.split_once(' ')?;
    let mut d = date.split(':').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (time, frac) = match rest.split_once('.') {
        Some((t, f)) => (t, format!("0.{f}").parse::<f64>().unwrap_or(0.0)),
        None => (rest, 0.0),
    };
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
        || y < 1970
    {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

struct Tiff<'a> {
    b: &'a [u8],
    le: bool,
}

impl<'a> Tiff<'a> {
    fn new(b: &'a [u8]) -> Option<Self> {
        let le = match b.get(0..2)? {
            b"II" => true,
            b"MM" => false,
            _ => return None,
        };
        Some(Self { b, le })
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        let s: [u8; 2] = self.b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let s: [u8; 4] = self.b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }

    /// The 12-byte entry of `tag` in the IFD at `ifd`: (type, count, value offset).
    fn entry(&self, ifd: usize, tag: u16) -> Option<(u16, u32, usize)> {
        let n = self.u16_at(ifd)? as usize;
        (0..n.min(512)).find_map(|i| {
            let e = ifd + 2 + 12 * i;
            (self.u16_at(e)? == tag)
                .then(|| Some((self.u16_at(e + 2)?, self.u32_at(e + 4)?, e + 8)))?
        })
    }

    fn find_short(&self, ifd: usize, tag: u16) -> Option<u16> {
        let (ty, _, at) = self.entry(ifd, tag)?;
        (ty == 3).then(|| self.u16_at(at))?
    }

    fn find_long(&self, ifd: usize, tag: u16) -> Option<u32> {
        let (ty, _, at) = self.entry(ifd, tag)?;
        match ty {
            4 => self.u32_at(at),
            3 => self.u16_at(at).map(u32::from),
            _ => None,
        }
    }

    fn find_ascii(&self, ifd: usize, tag: u16) -> Option<String> {
        let (ty, count, at) = self.entry(ifd, tag)?;
        if ty != 2 {
            return None;
        }
        let count = count as usize;
        let start = if count <= 4 {
            at
        } else {
            self.u32_at(at)? as usize
        };
        let raw = self.b.get(start..start.checked_add(count)?)?;
        let s: String = raw
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as char)
            .collect();
        let s = s.trim().to_string();
        (!s.is_empty() && s.is_ascii()).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian TIFF with IFD0 {Orientation=6, ExifIFD→{DateTimeOriginal}}.
    fn sample() -> Vec<u8> {
        let mut b = b"II*\0".to_vec();
        b.extend(8u32.to_le_bytes());
        // IFD0 at 8: two entries.
        b.extend(2u16.to_le_bytes());
        b.extend(0x0112u16.to_le_bytes());
        b.extend(3u16.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(6u16.to_le_bytes());
        b.extend([0, 0]);
        b.extend(0x8769u16.to_le_bytes());
        b.extend(4u16.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend(38u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        // Exif IFD at 38: one entry, ASCII of 20 bytes at 56.
        assert_eq!(b.len(), 38);
        b.extend(1u16.to_le_bytes());
        b.extend(0x9003u16.to_le_bytes());
        b.extend(2u16.to_le_bytes());
        b.extend(20u32.to_le_bytes());
        b.extend(56u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        assert_eq!(b.len(), 56);
        b.extend(b"2024:05:01 12:34:56\0");
        b
    }

    #[test]
    fn reads_orientation_and_time() {
        let t = sample();
        assert_eq!(orientation(&t), Some(6));
        assert_eq!(capture_time(&t).as_deref(), Some("2024:05:01 12:34:56"));
    }

    #[test]
    fn finds_exif_in_jpeg_and_parses_time() {
        let t = sample();
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0xFF, 0xE1];
        j.extend(((t.len() + 8) as u16).to_be_bytes());
        j.extend(b"Exif\0\0");
        j.extend(&t);
        j.extend([0xFF, 0xDA, 0, 2]);
        assert_eq!(jpeg_exif(&j), Some(&t[..]));
        assert_eq!(jpeg_exif(&j[..20]), None);
        assert_eq!(parse_time("1970:01:02 00:00:01"), Some(86_401.0));
        assert_eq!(parse_time("2024:05:01 12:34:56"), Some(1_714_566_896.0));
        assert_eq!(parse_time("2024:05:01 12:34:56.5"), Some(1_714_566_896.5));
        assert_eq!(parse_time("    :  :     :  :  "), None);
    }

    #[test]
    fn garbage_is_absent_not_a_panic() {
        let t = sample();
        for cut in 0..t.len() {
            let _ = orientation(&t[..cut]);
            let _ = capture_time(&t[..cut]);
        }
        assert_eq!(orientation(b"nonsense"), None);
        let mut bad = t.clone();
        bad[4] = 0xFF; // IFD offset past the end
        assert_eq!(orientation(&bad), None);
    }
}
