//! A patrol car takes its position from gpsd: Debian's gpsd, fed by gpsfake
//! replaying an NMEA log written here. Its reads carry the measured fix
//! (labelled GPS, with the receiver's error estimate) and `edge status`
//! shows the fix; a car whose gpsd is not running says it has no position
//! — never a guess labelled as measured — and its status says why.
//!
//! gpsfake ships in Debian's `gpsd-clients` (scripts/setup.sh installs it).
//! Without it the test says so loudly and skips, except in CI (`CI=true`),
//! where it fails.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alpr_e2e::story::frames_done;
use alpr_e2e::{free_udp_port, wait_for, Edge, EdgeOptions, Pki};
use alpr_shared::types::{DeviceKind, Location, TimeSource};

const LIMIT: Duration = Duration::from_secs(120);
/// 37°46.4958' N, 122°25.1649' W.
const LAT_E7: i32 = 377_749_300;
const LON_E7: i32 = -1_224_194_150;

/// `$…*CS` with its checksum.
fn nmea(body: &str) -> String {
    let cs = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{cs:02X}\r\n")
}

/// Twenty seconds of a 3-D fix standing still.
fn nmea_log() -> String {
    let mut s = String::new();
    for i in 0..20 {
        let t = format!("1214{i:02}.00");
        s += &nmea(&format!(
            "GPRMC,{t},A,3746.4958,N,12225.1649,W,0.0,0.0,281126,,,A"
        ));
        s += &nmea(&format!(
            "GPGGA,{t},3746.4958,N,12225.1649,W,1,08,0.9,12.0,M,-25.0,M,,"
        ));
        s += &nmea("GPGSA,A,3,01,02,03,04,05,06,07,08,,,,,1.5,0.9,1.2");
    }
    s
}

fn have_gpsfake() -> bool {
    Command::new("gpsfake")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// gpsfake and the gpsd it runs, in a process group of their own.
struct GpsFake(Child);

impl GpsFake {
    fn start(log: &std::path::Path, port: u16, out: &std::path::Path) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let child = Command::new("gpsfake")
            .args(["-n", "-q", "-c", "0.1", "-P", &port.to_string()])
            .arg(log)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out)?)
            .stderr(std::fs::File::create(out.with_extension("err"))?)
            .process_group(0)
            .spawn()?;
        Ok(GpsFake(child))
    }

    fn stop(&mut self) {
        // The whole group: gpsfake and its gpsd (`--`: a negative id is a
        // process group, not an option).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for GpsFake {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait until gpsd serves a 3-D fix.
fn wait_for_fix(port: u16) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(30), "gpsfake to serve a fix", || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(b"?WATCH={\"enable\":true,\"json\":true}\n")
            .ok()?;
        BufReader::new(s)
            .lines()
            .take(40)
            .map_while(Result::ok)
            .any(|l| l.contains("\"TPV\"") && l.contains("\"mode\":3"))
            .then_some(())
    })
}

fn photos(dir: &std::path::Path, skip: usize, n: usize) -> anyhow::Result<std::path::PathBuf> {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let mut names: Vec<_> = std::fs::read_dir(shared.join("data/plates/us"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    names.sort();
    std::fs::create_dir_all(dir)?;
    for p in names.iter().skip(skip).take(n) {
        std::fs::copy(p, dir.join(p.file_name().expect("name")))?;
    }
    Ok(dir.to_owned())
}

#[test]
fn a_car_takes_its_position_from_gpsd_and_says_when_it_has_none() -> anyhow::Result<()> {
    if !have_gpsfake() {
        return alpr_e2e::cannot_run(
            "edge_gps",
            "gpsfake is not installed (apt-get install gpsd gpsd-clients, or run scripts/setup.sh)",
        );
    }
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let models = shared.join("models").canonicalize()?;
    let pki = Pki::new()?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("drive.nmea");
    std::fs::write(&log, nmea_log())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut fake = GpsFake::start(&log, port, &dir.path().join("gpsfake.out"))?;
    wait_for_fix(port)?;
    // Nothing listens here: the second car has no gpsd.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();

    let nowhere = ([127, 0, 0, 1], free_udp_port()?).into();
    let car = |name: &str, photos: &std::path::Path, gpsd: u16, extra: &str| {
        let node = pki.node_of_kind(name, DeviceKind::Vehicle)?;
        let opts = EdgeOptions {
            generate: 0,
            extra_toml: format!(
                "\n[capture]\npaths = [{photos:?}]\nmodels_dir = {models:?}\ngpsd = \"127.0.0.1:{gpsd}\"\n{extra}",
            ),
            ..EdgeOptions::default()
        };
        anyhow::Ok(Edge::start(&node, nowhere, dir.path(), &opts)?)
    };
    let mut with_gps = car("car-1", &photos(&dir.path().join("p1"), 0, 3)?, port, "")?;
    let mut without = car(
        "car-2",
        &photos(&dir.path().join("p2"), 3, 3)?,
        dead,
        "stamp_now = false\n",
    )?;

    for edge in [&with_gps, &without] {
        wait_for(LIMIT, "the replay to finish", || {
            frames_done(&edge.proc.log_text())
        })?;
    }
    let st = wait_for(Duration::from_secs(20), "a fix on edge status", || {
        with_gps.status().filter(|s| s["gps"]["state"] == "3-D fix")
    })?;
    assert!(
        st["gps"]["position"]
            .as_str()
            .is_some_and(|p| p.starts_with("gps 37.77493")),
        "{st}"
    );
    let st = without.status().expect("status");
    assert_eq!(st["gps"]["state"], "no gpsd", "{st}");
    assert_eq!(st["gps"]["connected"], false, "{st}");
    assert!(st["gps"]["last_error"].as_str().is_some(), "{st}");

    // gpsd goes away: the car notices, keeps running and says so.
    fake.stop();
    wait_for(
        Duration::from_secs(20),
        "the lost gpsd on edge status",
        || {
            with_gps
                .status()
                .filter(|s| s["gps"]["connected"] == false && s["gps"]["position"].is_null())
        },
    )?;
    assert!(with_gps.proc.is_running());

    with_gps.proc.stop()?;
    without.proc.stop()?;
    let measured = with_gps.stored_entries()?;
    assert!(!measured.is_empty(), "car-1 read nothing");
    for e in &measured {
        let r = e.read().expect("a read");
        match r.location {
            Location::Gps {
                lat_e7,
                lon_e7,
                accuracy_cm,
            } => {
                assert!((lat_e7 - LAT_E7).abs() < 10, "{lat_e7}");
                assert!((lon_e7 - LON_E7).abs() < 10, "{lon_e7}");
                // gpsd's eph for HDOP 0.9 is metres, not a made-up zero.
                assert!(accuracy_cm > 0 && accuracy_cm < 100_000, "{accuracy_cm}");
            }
            ref other => panic!("car-1's read is not a measured fix: {other:?}"),
        }
        assert!(
            matches!(
                e.header.time_source,
                TimeSource::Ntp | TimeSource::Gps | TimeSource::LocalClock
            ),
            "{:?}",
            e.header.time_source
        );
    }
    // The fix is in the signed reads, never in the node's log (logs
    // outlive retention): no line names the place, in degrees (to four
    // places: a log line's timestamp may hold "37.77" seconds) or in 1e-7
    // degrees.
    let log = with_gps.proc.log_text();
    for place in [
        "37.7749",
        "122.4194",
        &LAT_E7.to_string(),
        &LON_E7.to_string(),
    ] {
        assert!(
            !log.contains(place),
            "a log line names the car's position:\n{log}"
        );
    }

    let guessed = without.stored_entries()?;
    assert!(!guessed.is_empty(), "car-2 read nothing");
    for e in &guessed {
        assert_eq!(e.read().map(|r| &r.location), Some(&Location::Unknown));
        // Replayed photos keep their own time, labelled by its source.
        assert!(
            matches!(
                e.header.time_source,
                TimeSource::Exif | TimeSource::FileTime
            ),
            "{:?}",
            e.header.time_source
        );
    }
    Ok(())
}
