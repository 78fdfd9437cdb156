//! Real cameras for the tests: a video of vehicle passes made from the
//! labelled photos (`tests/support/make-passes-video.sh`, ffmpeg), served
//! by GStreamer's RTSP server (`tests/support/rtsp-server.py`) or as
//! Motion-JPEG over HTTP (`tests/support/mjpeg-server.py`). Each server is
//! a real process the test can kill and start again on the same port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The repository's `tests/support` folder.
pub fn support(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("support")
        .join(script)
}

/// Debian's Python, which can import GStreamer (`python3-gi`).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// What is missing for the camera tests, if anything.
pub fn missing_tools() -> Option<String> {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        return Some("ffmpeg is not installed".into());
    }
    let gst = Command::new(SYSTEM_PYTHON)
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ])
        .output();
    match gst {
        Ok(o) if o.status.success() => None,
        _ => Some("GStreamer's RTSP server for Debian's Python is not installed".into()),
    }
}

/// One pass of the test video: when it is on screen, and its plate.
#[derive(Debug, Clone)]
pub struct Pass {
    pub start: f64,
    pub end: f64,
    pub plate: String,
}

/// A video of `n` passes (the first `n` labelled US photos), made once per
/// machine and codec and shared by the tests.
pub fn passes_video(n: usize, codec: &str) -> anyhow::Result<(PathBuf, Vec<Pass>)> {
    passes_video_with(n, codec, &[])
}

/// The same with more options for `make-passes-video.sh` (`--size`,
/// `--bitrate`, …); each set of options is its own cached file.
pub fn passes_video_with(
    n: usize,
    codec: &str,
    options: &[&str],
) -> anyhow::Result<(PathBuf, Vec<Pass>)> {
    let dir = std::env::temp_dir().join("alpr-camera-media");
    std::fs::create_dir_all(&dir)?;
    let variant: String = options
        .iter()
        .map(|o| o.trim_start_matches('-'))
        .collect::<Vec<_>>()
        .join("-");
    let video = dir.join(if variant.is_empty() {
        format!("passes-{n}-{codec}.mp4")
    } else {
        format!("passes-{n}-{codec}-{variant}.mp4")
    });
    let truth = video.with_extension("truth");
    if !video.exists() || !truth.exists() {
        // Made under a name of its own, then renamed: tests running at once
        // never read a half-written file.
        let tmp = dir.join(format!(
            "tmp-{}-{n}-{codec}-{variant}.mp4",
            std::process::id()
        ));
        let photos = crate::shared_dir().join("data/plates/us");
        let out = Command::new("bash")
            .arg(support("make-passes-video.sh"))
            .arg(&tmp)
            .arg(&photos)
            .arg(n.to_string())
            .args(["--codec", codec])
            .args(options)
            .output()
            .context("running make-passes-video.sh")?;
        anyhow::ensure!(
            out.status.success(),
            "make-passes-video.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(tmp.with_extension("truth"), &truth)?;
        std::fs::rename(&tmp, &video)?;
    }
    let passes = std::fs::read_to_string(&truth)?
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Pass {
                start: f.next()?.parse().ok()?,
                end: f.next()?.parse().ok()?,
                plate: f.next()?.to_owned(),
            })
        })
        .collect();
    Ok((video, passes))
}

/// A camera server process: RTSP or MJPEG over HTTP.
pub struct CameraServer {
    args: Vec<String>,
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    log: PathBuf,
}

impl CameraServer {
    /// GStreamer's RTSP server playing `video` in a loop; `auth` is
    /// (`basic`|`digest`, user, password).
    pub fn rtsp(
        video: &Path,
        auth: Option<(&str, &str, &str)>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::rtsp_over(video, auth, "any", log_dir)
    }

    /// The same, serving RTP over one lower transport only (`tcp`, `udp`)
    /// or `any`: a client that asks for another is refused at SETUP.
    pub fn rtsp_over(
        video: &Path,
        auth: Option<(&str, &str, &str)>,
        transport: &str,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            support("rtsp-server.py").display().to_string(),
            video.display().to_string(),
            "--transport".into(),
            transport.into(),
        ];
        if let Some((kind, user, password)) = auth {
            args.extend(["--auth", kind, "--user", user, "--password", password].map(String::from));
        }
        Self::launch(args, log_dir.join("rtsp-server.log"))
    }

    /// An MJPEG-over-HTTP camera looping over `source` (a folder of JPEGs
    /// or an .mjpeg file) at `fps`; over HTTPS with `tls`.
    pub fn mjpeg(
        source: &Path,
        fps: u32,
        tls: Option<&CameraTls>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            support("mjpeg-server.py").display().to_string(),
            source.display().to_string(),
            "--fps".into(),
            fps.to_string(),
        ];
        if let Some(t) = tls {
            args.extend([
                "--tls-cert".into(),
                t.cert.display().to_string(),
                "--tls-key".into(),
                t.key.display().to_string(),
            ]);
        }
        Self::launch(args, log_dir.join("mjpeg-server.log"))
    }

    fn launch(args: Vec<String>, log: PathBuf) -> anyhow::Result<Self> {
        let mut s = CameraServer {
            args,
            child: None,
            url: String::new(),
            port: 0,
            log,
        };
        s.start()?;
        Ok(s)
    }

    /// Start the server (again, on the same port once it has one), and
    /// wait for it to listen.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(SYSTEM_PYTHON)
            .args(&self.args)
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting the camera server")?;
        let stdout = child.stdout.take().context("its stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("READY ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "the camera server did not start: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        };
        self.port = url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .context("the server's port")?;
        self.url = url;
        self.child = Some(child);
        Ok(())
    }

    /// kill -9: the camera goes away at once.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again once its port is free again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for CameraServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A camera's TLS certificate, from a CA made for the test: the CA's
/// certificate (the camera's `ca_file`), the camera's certificate (for
/// 127.0.0.1) and its key, ECDSA P-256, made by the `openssl` command
/// line as an installer or a camera vendor would.
pub struct CameraTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn camera_tls(dir: &Path) -> anyhow::Result<CameraTls> {
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .context("running openssl")?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test camera CA",
            ],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "camera.key",
                "-out",
                "camera.csr",
                "-subj",
                "/CN=camera",
            ],
        ]
        .concat(),
    )?;
    std::fs::write(
        path("camera.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "camera.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "camera.ext",
        "-out",
        "camera.pem",
    ])?;
    Ok(CameraTls {
        ca: path("ca.pem"),
        cert: path("camera.pem"),
        key: path("camera.key"),
    })
}

/// A `[[capture.cameras]]` entry.
pub fn camera_toml(name: &str, direction: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[capture.cameras]]\nname = {name:?}\ndirection = {direction:?}\nurl = {url:?}\n{extra}\n"
    )
}

/// The `[capture]` section a camera edge needs beside its cameras.
pub fn capture_toml() -> anyhow::Result<String> {
    Ok(format!(
        "\n[capture]\nmodels_dir = {:?}\nsite_id = \"test-site\"\n",
        crate::shared_dir().join("models").canonicalize()?
    ))
}

/// The cameras in an edge's `edge status --json`.
pub fn cameras(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["capture"]["cameras"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One camera's state by name.
pub fn camera<'a>(status: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    status["capture"]["cameras"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}
