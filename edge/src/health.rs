//! The node's health: what capture is doing (a source that fails shows at
//! once), whether the store commits, and the figures a machine scrapes on
//! the metrics endpoint. `edge status` and `edge health` read the same
//! [`crate::local::Status`].

use std::sync::{Arc, Mutex};

use alpr_shared::metrics::{Exporter, MetricsText};
use serde::{Deserialize, Serialize};

use crate::capture::live::{CameraStats, CameraStatus};
use crate::store::StoreHandle;
use crate::sync::SharedStatus;

/// What capture (camera, photo replay, video, or read replay) is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureState {
    /// "off", "running", "failing", "finished" or "failed".
    pub state: String,
    pub frames: u64,
    pub frames_failed: u64,
    /// Frames failed in a row (0 once a frame is read again).
    pub failing_in_a_row: u64,
    pub reads: u64,
    pub last_error: Option<String>,
    /// Each live camera of `[[capture.cameras]]`.
    #[serde(default)]
    pub cameras: Vec<CameraStatus>,
}

/// Capture's state, shared with status and metrics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CaptureHealth(Arc<Mutex<CaptureState>>, Arc<Mutex<Vec<Arc<CameraStats>>>>);

/// A camera not streaming for this long is a problem (`edge health`).
pub const CAMERA_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl CaptureHealth {
    /// Follow a live camera's figures.
    pub fn add_camera(&self, stats: Arc<CameraStats>) {
        if let Ok(mut c) = self.1.lock() {
            c.push(stats);
        }
    }

    pub fn new(state: &str) -> Self {
        let h = CaptureHealth::default();
        h.update(|s| s.state = state.to_owned());
        h
    }

    pub fn update(&self, f: impl FnOnce(&mut CaptureState)) {
        if let Ok(mut g) = self.0.lock() {
            f(&mut g);
        }
    }

    pub fn get(&self) -> CaptureState {
        let mut s = self.0.lock().map(|g| g.clone()).unwrap_or_default();
        if let Ok(c) = self.1.lock() {
            s.cameras = c.iter().map(|c| c.status()).collect();
        }
        s
    }

    /// A frame was read and recognised.
    pub fn frame_ok(&self, reads: u64) {
        self.update(|s| {
            s.frames += 1;
            s.reads += reads;
            s.failing_in_a_row = 0;
            s.state = "running".into();
        });
    }

    /// A frame could not be had: the source is failing until one is.
    pub fn frame_failed(&self, error: &str) {
        self.update(|s| {
            s.frames += 1;
            s.frames_failed += 1;
            s.failing_in_a_row += 1;
            s.last_error = Some(error.to_owned());
            s.state = "failing".into();
        });
    }

    /// Capture ended: finished, or failed with `error`.
    pub fn ended(&self, error: Option<&str>) {
        self.update(|s| match error {
            None => s.state = "finished".into(),
            Some(e) => {
                s.state = "failed".into();
                s.last_error = Some(e.to_owned());
            }
        });
    }
}

/// What is wrong with the node now, for a person or a service manager
/// (empty: healthy). An offline link is not a fault: vehicles drive out of
/// coverage.
pub fn problems(
    store: &StoreHandle,
    capture: &CaptureState,
    disk_free: Option<u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = store.failing() {
        out.push(format!("the store cannot commit: {e}"));
    }
    if matches!(capture.state.as_str(), "failing" | "failed") {
        out.push(format!(
            "capture {}: {}",
            capture.state,
            capture.last_error.as_deref().unwrap_or("?")
        ));
    }
    for cam in &capture.cameras {
        let since = std::time::Duration::from_secs(cam.for_secs);
        let down = cam.link == "down" || (cam.link == "connecting" && since >= CAMERA_GRACE);
        if down {
            out.push(format!(
                "camera {} {} for {} s: {}",
                cam.name,
                cam.link,
                cam.for_secs,
                cam.error.as_deref().unwrap_or("no frames yet")
            ));
        }
    }
    if disk_free == Some(0) {
        out.push("the data folder's disk is full".into());
    }
    out
}

/// The node's metrics endpoint.
pub struct EdgeExporter {
    pub store: StoreHandle,
    pub sync: SharedStatus,
    pub capture: CaptureHealth,
}

impl EdgeExporter {
    fn disk_free(&self) -> Option<u64> {
        self.store
            .path()
            .parent()
            .and_then(alpr_shared::health::disk_free)
    }
}

impl Exporter for EdgeExporter {
    fn metrics(&self) -> String {
        let log = self.store.status();
        let sync = self.sync.lock().map(|s| s.clone()).unwrap_or_default();
        let cap = self.capture.get();
        let (commits, commit_secs) = self.store.commit_stats();
        let up = if sync.link == "connected" { 1.0 } else { 0.0 };
        let mut m = MetricsText::new();
        m.gauge(
            "alpr_edge_log_entries",
            "Reads in the node's signed log.",
            log.len as f64,
        )
        .gauge(
            "alpr_edge_acked_entries",
            "Reads the hub has acknowledged.",
            log.acked as f64,
        )
        .gauge(
            "alpr_edge_backlog_entries",
            "Reads not yet acknowledged by the hub.",
            log.backlog() as f64,
        )
        .gauge(
            "alpr_edge_images_pending",
            "Images not yet held by the hub.",
            log.images_pending as f64,
        )
        .gauge("alpr_edge_link_up", "1 while connected to the hub.", up)
        .counter(
            "alpr_edge_connects_total",
            "Connections made to the hub.",
            sync.connects as f64,
        )
        .counter(
            "alpr_edge_store_commits_total",
            "Durable store commits.",
            commits as f64,
        )
        .counter(
            "alpr_edge_store_commit_seconds_total",
            "Time spent in durable commits.",
            commit_secs,
        )
        .gauge(
            "alpr_edge_store_failing",
            "1 while the store cannot commit (it retries).",
            if self.store.failing().is_some() {
                1.0
            } else {
                0.0
            },
        )
        .counter(
            "alpr_edge_capture_frames_total",
            "Frames captured.",
            cap.frames as f64,
        )
        .counter(
            "alpr_edge_capture_frames_failed_total",
            "Frames that could not be read or recognised.",
            cap.frames_failed as f64,
        )
        .gauge(
            "alpr_edge_capture_failing",
            "1 while the capture source fails.",
            if matches!(cap.state.as_str(), "failing" | "failed") {
                1.0
            } else {
                0.0
            },
        );
        if !cap.cameras.is_empty() {
            let each = |f: &dyn Fn(&CameraStatus) -> f64| -> Vec<(String, f64)> {
                cap.cameras.iter().map(|c| (c.name.clone(), f(c))).collect()
            };
            m.labelled(
                "alpr_edge_camera_up",
                "gauge",
                "1 while the camera streams.",
                "camera",
                &each(&|c| if c.link == "streaming" { 1.0 } else { 0.0 }),
            );
            type Counter = (&'static str, &'static str, fn(&CameraStatus) -> u64);
            let counters: [Counter; 7] = [
                (
                    "alpr_edge_camera_frames_received_total",
                    "Frames received from the camera.",
                    |c| c.frames_received,
                ),
                (
                    "alpr_edge_camera_frames_decoded_total",
                    "Frames decoded.",
                    |c| c.frames_decoded,
                ),
                (
                    "alpr_edge_camera_frames_analysed_total",
                    "Frames the detector ran on.",
                    |c| c.frames_analysed,
                ),
                (
                    "alpr_edge_camera_frames_dropped_total",
                    "Frames replaced by a newer one before the recogniser took them.",
                    |c| c.frames_dropped,
                ),
                (
                    "alpr_edge_camera_frames_still_total",
                    "Frames skipped: nothing moved in the region of interest.",
                    |c| c.frames_still,
                ),
                (
                    "alpr_edge_camera_frames_corrupt_total",
                    "Frames that could not be decoded.",
                    |c| c.frames_corrupt,
                ),
                (
                    "alpr_edge_camera_reconnects_total",
                    "Sessions started again after a failure.",
                    |c| c.reconnects,
                ),
            ];
            for (name, help, f) in counters {
                m.labelled(name, "counter", help, "camera", &each(&|c| f(c) as f64));
            }
        }
        if let Some(free) = self.disk_free() {
            m.gauge(
                "alpr_edge_disk_free_bytes",
                "Free bytes on the data folder's filesystem.",
                free as f64,
            );
        }
        m.finish()
    }

    fn health(&self) -> Result<(), String> {
        let p = problems(&self.store, &self.capture.get(), self.disk_free());
        if p.is_empty() {
            Ok(())
        } else {
            Err(p.join("; "))
        }
    }
}
