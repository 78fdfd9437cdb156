//! One read per vehicle pass from a stream of frames.
//!
//! A [`Tracker`] takes each frame's reads with the frame's capture time and
//! links each read to an open track when its box overlaps the track's last
//! box or its text is within a small edit distance of the track's text. A
//! track that has not been seen for `max_gap` (or has lasted `max_len`) is
//! closed and emitted as one [`PassRead`]: the text with the most
//! probability mass over all its frames (each frame votes with its text's
//! probability and its alternatives' probabilities), shown with the crop and
//! box of the best frame that read that text.
//!
//! Pure: no clock, no I/O; time is whatever the caller passes (capture time).

use std::collections::HashMap;
use std::time::Duration;

use super::{Alternative, PlateRead};

/// Tracker settings.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// A track unseen for longer than this is closed.
    pub max_gap: Duration,
    /// A track is closed after this long even if still visible (a parked car).
    pub max_len: Duration,
    /// Boxes overlapping at least this much (IoU) are the same plate.
    pub min_iou: f32,
    /// Texts this close (edit distance) are the same plate.
    pub max_edit: usize,
    /// Tracks seen in fewer frames are dropped as noise.
    pub min_frames: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            max_gap: Duration::from_millis(1500),
            max_len: Duration::from_secs(60),
            min_iou: 0.05,
            max_edit: 2,
            min_frames: 1,
        }
    }
}

/// One read per vehicle pass.
#[derive(Debug, Clone)]
pub struct PassRead {
    /// The best frame's read, with the fused text, confidence and alternatives.
    pub read: PlateRead,
    pub first_seen: Duration,
    pub last_seen: Duration,
    /// Capture time of the frame whose crop and box are in `read`.
    pub best_frame: Duration,
    pub frames: usize,
}

#[derive(Debug)]
struct Track {
    frames: Vec<(Duration, PlateRead)>,
    votes: HashMap<String, f32>,
    first_seen: Duration,
    last_seen: Duration,
}

impl Track {
    fn leader(&self) -> &str {
        self.votes
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map_or("", |(t, _)| t.as_str())
    }

    fn add(&mut self, at: Duration, read: PlateRead) {
        *self.votes.entry(read.text.clone()).or_default() += read.confidence;
        for a in &read.alternatives {
            *self.votes.entry(a.text.clone()).or_default() += a.probability;
        }
        self.last_seen = at;
        self.frames.push((at, read));
    }
}

/// Links per-frame reads into vehicle passes.
#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    open: Vec<Track>,
}

impl Tracker {
    /// Change how long a plate may go unseen before its pass closes (a
    /// live camera's gap follows how often its frames are looked at).
    pub fn set_max_gap(&mut self, gap: Duration) {
        self.config.max_gap = gap;
    }

    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            open: Vec::new(),
        }
    }

    /// Adds one frame's reads (capture time `at`, non-decreasing) and
    /// returns the passes that closed before it.
    pub fn push(&mut self, at: Duration, reads: Vec<PlateRead>) -> Vec<PassRead> {
        let mut done = self.close(|t, c| {
            at.saturating_sub(t.last_seen) > c.max_gap
                || at.saturating_sub(t.first_seen) > c.max_len
        });
        let mut taken = vec![false; self.open.len()];
        for read in reads {
            let best = self
                .open
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken[*i])
                .filter_map(|(i, t)| {
                    let last = t.frames.last().map(|(_, r)| r)?;
                    let iou = last.bbox.iou(&read.bbox);
                    let edit = edit_distance(t.leader(), &read.text);
                    let same = iou >= self.config.min_iou || edit <= self.config.max_edit;
                    same.then_some((i, iou, edit))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.2.cmp(&a.2)));
            match best {
                Some((i, _, _)) => {
                    taken[i] = true;
                    self.open[i].add(at, read);
                }
                None => {
                    let mut t = Track {
                        frames: Vec::new(),
                        votes: HashMap::new(),
                        first_seen: at,
                        last_seen: at,
                    };
                    t.add(at, read);
                    self.open.push(t);
                    taken.push(true);
                }
            }
        }
        done.sort_by_key(|p| p.first_seen);
        done
    }

    /// Closes every open track (end of stream).
    pub fn flush(&mut self) -> Vec<PassRead> {
        let mut done = self.close(|_, _| true);
        done.sort_by_key(|p| p.first_seen);
        done
    }

    /// When the earliest pass still open was first seen.
    pub fn earliest_open(&self) -> Option<Duration> {
        self.open.iter().map(|t| t.first_seen).min()
    }

    /// The frames an open pass may still choose as its best: for each text
    /// its frames read, the most confident of them (the last on a tie, as
    /// `finish` chooses).
    pub fn candidate_frames(&self) -> Vec<Duration> {
        let mut out = Vec::new();
        for t in &self.open {
            let mut best: HashMap<&str, (Duration, f32)> = HashMap::new();
            for (at, r) in &t.frames {
                let e = best.entry(r.text.as_str()).or_insert((*at, r.confidence));
                if r.confidence >= e.1 {
                    *e = (*at, r.confidence);
                }
            }
            out.extend(best.values().map(|(at, _)| *at));
        }
        out
    }

    /// Tracks still open.
    pub fn open_tracks(&self) -> usize {
        self.open.len()
    }

    fn close(&mut self, should: impl Fn(&Track, &TrackerConfig) -> bool) -> Vec<PassRead> {
        let (closing, open): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|t| should(t, &self.config));
        self.open = open;
        closing
            .into_iter()
            .filter(|t| t.frames.len() >= self.config.min_frames.max(1))
            .filter_map(finish)
            .collect()
    }
}

fn finish(t: Track) -> Option<PassRead> {
    let n = t.frames.len() as f32;
    let text = t.leader().to_string();
    let mut ranked: Vec<(&String, &f32)> = t.votes.iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let confidence = (t.votes.get(&text).copied().unwrap_or(0.0) / n).clamp(0.0, 1.0);
    // Best frame: the most confident frame that read the winning text, else
    // the most confident frame.
    let pick = t
        .frames
        .iter()
        .filter(|(_, r)| r.text == text)
        .max_by(|a, b| a.1.confidence.total_cmp(&b.1.confidence))
        .or_else(|| {
            t.frames
                .iter()
                .max_by(|a, b| a.1.confidence.total_cmp(&b.1.confidence))
        })?;
    let (best_frame, best) = (pick.0, pick.1.clone());
    let mut read = best;
    if read.text != text {
        read.char_confidence = vec![confidence; text.len()];
        read.text = text.clone();
    }
    read.confidence = confidence;
    read.alternatives = ranked
        .iter()
        .filter(|(s, _)| **s != text)
        .take(8)
        .map(|(s, v)| Alternative {
            text: (*s).clone(),
            probability: (**v / n).clamp(0.0, 1.0),
        })
        .collect();
    Some(PassRead {
        read,
        first_seen: t.first_seen,
        last_seen: t.last_seen,
        best_frame,
        frames: t.frames.len(),
    })
}

/// Levenshtein distance over bytes (plate text is ASCII).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::{Detection, RgbImage};
    use super::*;

    fn read(text: &str, conf: f32, x: f32) -> PlateRead {
        PlateRead {
            text: text.into(),
            confidence: conf,
            char_confidence: vec![conf; text.len()],
            bbox: Detection {
                x1: x,
                y1: 100.0,
                x2: x + 100.0,
                y2: 150.0,
                score: 0.9,
            },
            region: None,
            alternatives: Vec::new(),
            decisions: Vec::new(),
            crop: RgbImage::from_raw(1, 1, vec![0, 0, 0]).expect("1x1"),
            detector_model: "d".into(),
            ocr_model: "o".into(),
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn one_pass_one_read_from_the_majority() {
        let mut t = Tracker::default();
        let frames = [
            ("7ABC123", 0.8),
            ("7ABC128", 0.5),
            ("7ABC123", 0.9),
            ("7A8C123", 0.4),
        ];
        for (i, (text, c)) in frames.iter().enumerate() {
            let out = t.push(
                ms(i as u64 * 100),
                vec![read(text, *c, 100.0 + i as f32 * 10.0)],
            );
            assert!(out.is_empty());
        }
        assert_eq!(t.open_tracks(), 1);
        let out = t.push(ms(5000), vec![]);
        assert_eq!(out.len(), 1);
        let p = &out[0];
        assert_eq!(p.read.text, "7ABC123");
        assert_eq!(p.frames, 4);
        assert_eq!(
            p.best_frame,
            ms(200),
            "the 0.9 frame is the best of the winning text"
        );
        assert!((p.read.confidence - (0.8 + 0.9) / 4.0).abs() < 1e-6);
        assert!(p.read.alternatives.iter().any(|a| a.text == "7ABC128"));
        assert_eq!(t.open_tracks(), 0);
    }

    #[test]
    fn the_best_frame_is_always_among_the_candidates_kept() {
        // Ties, a text read once, and a winner that only ever was an
        // alternative: the pass's best frame was a candidate just before
        // it closed, and only a few frames of many are candidates.
        let mut alt_only = read("7ABC12B", 0.5, 100.0);
        alt_only.alternatives = vec![Alternative {
            text: "7ABC123".into(),
            probability: 0.45,
        }];
        let sequences: Vec<Vec<PlateRead>> = vec![
            (0..12)
                .map(|i| {
                    read(
                        ["7ABC123", "7ABC128"][i % 2],
                        0.5 + (i % 5) as f32 / 10.0,
                        100.0,
                    )
                })
                .collect(),
            vec![
                read("7ABC123", 0.7, 100.0),
                read("7ABC123", 0.7, 100.0),
                read("7ABC128", 0.7, 100.0),
            ],
            vec![alt_only.clone(); 5],
        ];
        for frames in sequences {
            let mut t = Tracker::default();
            let n = frames.len();
            for (i, r) in frames.into_iter().enumerate() {
                t.push(ms(i as u64 * 100), vec![r]);
            }
            let kept = t.candidate_frames();
            assert!(kept.len() <= 2 && kept.len() < n, "{kept:?}");
            let out = t.push(ms(10_000), vec![]);
            assert_eq!(out.len(), 1);
            assert!(
                kept.contains(&out[0].best_frame),
                "best frame {:?} not among {kept:?}",
                out[0].best_frame
            );
        }
    }

    #[test]
    fn two_vehicles_at_once_stay_apart() {
        let mut t = Tracker::default();
        for i in 0..3u64 {
            t.push(
                ms(i * 100),
                vec![read("AAA111", 0.9, 0.0), read("ZZZ999", 0.9, 800.0)],
            );
        }
        let out = t.flush();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|p| p.frames == 3));
    }

    #[test]
    fn a_gap_splits_passes_of_the_same_plate() {
        let mut t = Tracker::default();
        t.push(ms(0), vec![read("AAA111", 0.9, 0.0)]);
        let out = t.push(ms(10_000), vec![read("AAA111", 0.9, 0.0)]);
        assert_eq!(out.len(), 1);
        assert_eq!(t.flush().len(), 1);
    }

    #[test]
    fn a_parked_car_is_emitted_after_max_len() {
        let mut t = Tracker::new(TrackerConfig {
            max_len: Duration::from_secs(2),
            ..TrackerConfig::default()
        });
        let mut emitted = 0;
        for i in 0..50u64 {
            emitted += t.push(ms(i * 100), vec![read("PARK01", 0.9, 0.0)]).len();
        }
        assert!(emitted >= 2);
    }

    #[test]
    fn edit() {
        assert_eq!(edit_distance("ABC", "ABC"), 0);
        assert_eq!(edit_distance("ABC", "ABD"), 1);
        assert_eq!(edit_distance("ABC", "AC"), 1);
        assert_eq!(edit_distance("", "AB"), 2);
    }
}
