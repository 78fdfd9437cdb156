//! A small gpsd client: a vehicle's position (and, when the system clock is
//! not synchronised, its time) from the GPS receiver that `gpsd` serves.
//!
//! It connects to gpsd (TCP, `127.0.0.1:2947` by default), asks for JSON
//! reports (`?WATCH={"enable":true,"json":true}`) and keeps the latest TPV
//! report. It runs as a task of its own and publishes on a `watch`
//! channel, so capture only ever looks at the latest state and never waits
//! for the receiver. A lost connection is retried with backoff (1 s
//! doubling to 30 s).
//!
//! A fix counts only while it is fresh ([`MAX_FIX_AGE`], measured on the
//! monotonic clock from when the report arrived) and 2-D or better
//! (`mode` ≥ 2). Without one, a read says it has no measured position.

use std::time::{Duration, Instant};

use alpr_shared::types::{Location, UnixMillis, ACCURACY_UNKNOWN};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// gpsd's usual address.
pub const DEFAULT_GPSD: &str = "127.0.0.1:2947";
/// A fix older than this is no fix.
pub const MAX_FIX_AGE: Duration = Duration::from_secs(3);
/// Longest report line taken from gpsd.
const MAX_LINE: u64 = 64 * 1024;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One TPV report with a position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// 2 = 2-D, 3 = 3-D.
    pub mode: u8,
    pub lat: f64,
    pub lon: f64,
    /// Horizontal error estimate in metres (`eph`, else the larger of
    /// `epx`/`epy`), if the receiver gave one.
    pub error_m: Option<f64>,
    /// The receiver's UTC time of the fix.
    pub time: Option<UnixMillis>,
    /// When the report arrived (monotonic).
    pub received: Instant,
}

impl Fix {
    pub fn location(&self) -> Location {
        Location::Gps {
            lat_e7: (self.lat * 1e7).round() as i32,
            lon_e7: (self.lon * 1e7).round() as i32,
            accuracy_cm: self.error_m.map_or(ACCURACY_UNKNOWN, |m| {
                (m * 100.0)
                    .round()
                    .clamp(0.0, f64::from(ACCURACY_UNKNOWN - 1)) as u32
            }),
        }
    }

    /// The receiver's time now: its fix time plus the time since the report.
    pub fn time_now(&self, now: Instant) -> Option<UnixMillis> {
        let t = self.time?;
        let since = now.saturating_duration_since(self.received);
        Some(UnixMillis(t.0.saturating_add(
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
        )))
    }
}

/// What the client knows.
#[derive(Debug, Clone, Default)]
pub struct GpsState {
    pub address: String,
    pub connected: bool,
    /// The latest report with a position (it may be stale: see [`Self::fix`]).
    pub last_fix: Option<Fix>,
    pub last_error: Option<String>,
}

impl GpsState {
    /// The current fix: fresh and at least 2-D.
    pub fn fix(&self, now: Instant) -> Option<Fix> {
        self.last_fix
            .filter(|f| f.mode >= 2 && now.saturating_duration_since(f.received) <= MAX_FIX_AGE)
    }

    /// For `edge status`.
    pub fn summary(&self, now: Instant) -> GpsStatus {
        let fix = self.fix(now);
        GpsStatus {
            gpsd: self.address.clone(),
            connected: self.connected,
            state: match (self.connected, fix, self.last_fix) {
                (_, Some(f), _) => format!("{}-D fix", f.mode),
                (true, None, Some(_)) => "connected, fix lost".into(),
                (true, None, None) => "connected, no fix yet".into(),
                (false, None, _) => "no gpsd".into(),
            },
            position: fix.map(|f| f.location().to_string()),
            fix_age_ms: self.last_fix.map(|f| {
                u64::try_from(now.saturating_duration_since(f.received).as_millis())
                    .unwrap_or(u64::MAX)
            }),
            last_error: self.last_error.clone(),
        }
    }
}

/// The GPS part of `edge status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct GpsStatus {
    pub gpsd: String,
    pub connected: bool,
    /// "3-D fix", "connected, no fix yet", "connected, fix lost", "no gpsd".
    pub state: String,
    /// The current fix, if any.
    pub position: Option<String>,
    /// Age of the latest fix received.
    pub fix_age_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// Cheap to clone; reading never blocks.
#[derive(Debug, Clone)]
pub struct GpsHandle {
    rx: watch::Receiver<GpsState>,
}

impl GpsHandle {
    pub fn state(&self) -> GpsState {
        self.rx.borrow().clone()
    }

    pub fn fix(&self) -> Option<Fix> {
        self.rx.borrow().fix(Instant::now())
    }

    /// A handle on a fixed state (tests, and nodes without gpsd).
    pub fn fixed(state: GpsState) -> GpsHandle {
        let (_tx, rx) = watch::channel(state);
        GpsHandle { rx }
    }
}

/// Start the client on the current tokio runtime; it stops on `cancel`.
pub fn spawn(address: String, cancel: CancellationToken) -> GpsHandle {
    let (tx, rx) = watch::channel(GpsState {
        address: address.clone(),
        ..GpsState::default()
    });
    tokio::spawn(run(address, tx, cancel));
    GpsHandle { rx }
}

async fn run(address: String, tx: watch::Sender<GpsState>, cancel: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    while !cancel.is_cancelled() {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = session(&address, &tx, &mut backoff) => r,
        };
        let error = match result {
            Ok(()) => "gpsd closed the connection".to_owned(),
            Err(e) => e.to_string(),
        };
        let was_connected = tx.borrow().connected;
        if was_connected {
            info!(gpsd = %address, error = %error, "gpsd connection lost");
        } else {
            debug!(gpsd = %address, error = %error, "gpsd not reachable");
        }
        tx.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(error);
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn session(
    address: &str,
    tx: &watch::Sender<GpsState>,
    backoff: &mut Duration,
) -> std::io::Result<()> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"?WATCH={\"enable\":true,\"json\":true}\n")
        .await?;
    info!(gpsd = %address, "gpsd connected");
    tx.send_modify(|s| {
        s.connected = true;
        s.last_error = None;
    });
    *backoff = BACKOFF_MIN;
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "report line too long",
            ));
        }
        match parse_report(&line, Instant::now()) {
            Report::Fix(f) => tx.send_modify(|s| s.last_fix = Some(f)),
            Report::NoFix => tx.send_modify(|s| {
                if let Some(f) = s.last_fix.as_mut() {
                    f.mode = f.mode.min(1);
                }
            }),
            Report::Other => {}
        }
    }
}

/// What one gpsd line says about the position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Report {
    /// A TPV report with a 2-D or 3-D position.
    Fix(Fix),
    /// A TPV report without one (mode 0 or 1, or no coordinates).
    NoFix,
    /// Anything else (VERSION, DEVICES, SKY, a line that is not JSON…).
    Other,
}

/// Read one line of gpsd's JSON.
pub fn parse_report(line: &[u8], received: Instant) -> Report {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return Report::Other;
    };
    if v.get("class").and_then(|c| c.as_str()) != Some("TPV") {
        return Report::Other;
    }
    let mode = v.get("mode").and_then(|m| m.as_u64()).unwrap_or(0);
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).filter(|x| x.is_finite());
    let (Some(lat), Some(lon)) = (num("lat"), num("lon")) else {
        return Report::NoFix;
    };
    if mode < 2 || lat.abs() > 90.0 || lon.abs() > 180.0 {
        return Report::NoFix;
    }
    let error_m = num("eph")
        .or_else(|| match (num("epx"), num("epy")) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        })
        .filter(|e| *e >= 0.0);
    let time = v.get("time").and_then(|t| t.as_str()).and_then(parse_time);
    Report::Fix(Fix {
        mode: u8::try_from(mode.min(3)).unwrap_or(3),
        lat,
        lon,
        error_m,
        time,
        received,
    })
}

/// gpsd's ISO 8601 UTC time, `2026-11-28T16:10:40.000Z`.
fn parse_time(s: &str) -> Option<UnixMillis> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let h: u64 = t.next()?.parse().ok()?;
    let mi: u64 = t.next()?.parse().ok()?;
    let sec = t.next()?;
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, "0"));
    let whole: u64 = whole.parse().ok()?;
    let ms: u64 = format!("{:0<3}", frac.get(..3.min(frac.len()))?)
        .parse()
        .ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || whole > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + whole;
    Some(UnixMillis(secs.checked_mul(1000)?.checked_add(ms)?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPV: &str = r#"{"class":"TPV","device":"/dev/pts/1","mode":3,"time":"2026-11-28T12:14:14.123Z","ept":0.005,"lat":37.7749295,"lon":-122.4194155,"alt":12.0,"epx":4.1,"epy":5.3,"eph":6.2}"#;

    #[test]
    fn a_tpv_report_is_a_fix() {
        let now = Instant::now();
        let Report::Fix(f) = parse_report(TPV.as_bytes(), now) else {
            panic!("not a fix");
        };
        assert_eq!(f.mode, 3);
        assert_eq!(f.time, Some(UnixMillis(1_795_868_054_123)));
        assert_eq!(
            f.location(),
            Location::Gps {
                lat_e7: 377_749_295,
                lon_e7: -1_224_194_155,
                accuracy_cm: 620
            }
        );
    }

    #[test]
    fn no_fix_is_no_fix() {
        let now = Instant::now();
        for line in [
            r#"{"class":"TPV","mode":1,"lat":1.0,"lon":2.0}"#,
            r#"{"class":"TPV","mode":3}"#,
            r#"{"class":"TPV","mode":3,"lat":91.0,"lon":2.0}"#,
        ] {
            assert_eq!(parse_report(line.as_bytes(), now), Report::NoFix, "{line}");
        }
        for line in [r#"{"class":"SKY"}"#, "garbage", r#"{"class":"VERSION"}"#] {
            assert_eq!(parse_report(line.as_bytes(), now), Report::Other, "{line}");
        }
    }

    #[test]
    fn a_stale_or_one_dimensional_fix_is_no_fix() {
        let start = Instant::now();
        let Report::Fix(f) = parse_report(TPV.as_bytes(), start) else {
            panic!("not a fix");
        };
        let mut st = GpsState {
            last_fix: Some(f),
            connected: true,
            ..GpsState::default()
        };
        assert!(st.fix(start + Duration::from_secs(1)).is_some());
        assert!(st
            .fix(start + MAX_FIX_AGE + Duration::from_millis(1))
            .is_none());
        assert_eq!(
            st.summary(start + Duration::from_secs(10)).state,
            "connected, fix lost"
        );
        if let Some(f) = st.last_fix.as_mut() {
            f.mode = 1;
        }
        assert!(st.fix(start).is_none());
    }

    #[test]
    fn gps_time_moves_on_from_the_fix() {
        let start = Instant::now();
        let Report::Fix(f) = parse_report(TPV.as_bytes(), start) else {
            panic!("not a fix");
        };
        assert_eq!(
            f.time_now(start + Duration::from_millis(1500)),
            Some(UnixMillis(1_795_868_055_623))
        );
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z"),
            Some(UnixMillis(951_782_400_000))
        );
        assert_eq!(parse_time("2000-13-29T00:00:00Z"), None);
    }

    #[tokio::test]
    async fn an_absent_gpsd_is_retried_and_capture_sees_no_fix() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let cancel = CancellationToken::new();
        let gps = spawn(format!("127.0.0.1:{port}"), cancel.clone());
        let mut rx = gps.rx.clone();
        rx.wait_for(|s| s.last_error.is_some())
            .await
            .expect("the client reports");
        assert!(gps.fix().is_none());
        assert_eq!(gps.state().summary(Instant::now()).state, "no gpsd");
        cancel.cancel();
    }
}
