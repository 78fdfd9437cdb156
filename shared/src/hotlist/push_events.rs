//! What the simulated edges of `alpr-bench hub push` report: `alpr-bench edge
//! push-edges` (the edge's own sync and list code, in a process of its
//! own) prints one JSON object per line, and the hub's bench reads them.
//! Times are microseconds of the system clock, which both processes share
//! (they run on one machine).

use serde::{Deserialize, Serialize};

/// One line of `alpr-bench edge push-edges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum PushEvent {
    /// The seed edge holds the list whole: fetched over the protocol,
    /// checked, stored durably and its matcher built, `ms` after it
    /// connected.
    Whole {
        ms: f64,
        generation: u64,
        bytes: u64,
    },
    /// Every edge holds the seed's generation (each its own copy, checked
    /// when its store opened) and is connected and welcomed.
    Ready { edges: usize },
    /// A delta reached edge `edge` (its frames checked by the sync core).
    Delivered {
        edge: usize,
        at_us: u64,
        to: u64,
        bytes: u64,
    },
    /// Generation `generation` is in force on edge `edge`: its signature
    /// checked, the file stored durably, the matcher rebuilt and swapped.
    Applied {
        edge: usize,
        at_us: u64,
        generation: u64,
    },
    /// The local entries document reached edge `edge` and loaded.
    Local { edge: usize, at_us: u64 },
    /// Edge `edge` failed: the run is void.
    Failed { edge: usize, error: String },
}

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_line_of_json_each_and_read_back() {
        let e = PushEvent::Applied {
            edge: 3,
            at_us: 1_700_000_000_000_000,
            generation: 2,
        };
        let line = serde_json::to_string(&e).expect("encodes");
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""event":"applied""#), "{line}");
        assert_eq!(
            serde_json::from_str::<PushEvent>(&line).expect("decodes"),
            e
        );
    }
}
