//! Which reads retention purges, decided from plain values so the hub's
//! and the edge's jobs (and their tests, with a simulated clock) share one
//! rule: a read is due when it was captured before the cutoff and still
//! holds its content; a due read under an active legal hold is kept.

use serde::Serialize;

use super::{SeqRange, MAX_PURGE_RANGES};
use crate::control::holds::{held, Hold};
use crate::types::{Hash32, ReadContent, UnixMillis};

/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Reads captured before this are past a retention of `days` at `now`.
pub fn cutoff(now: UnixMillis, days: u32) -> UnixMillis {
    UnixMillis(now.0.saturating_sub(u64::from(days) * DAY_MS))
}

/// What one pass over a node's reads found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgePlan {
    /// Sequence numbers to purge, coalesced, in order.
    pub ranges: Vec<SeqRange>,
    /// Reads to purge.
    pub due: u64,
    /// Reads past retention kept because a hold covers them.
    pub held: u64,
}

impl PurgePlan {
    /// The ranges in chunks small enough for one signed purge record each.
    pub fn records(&self) -> impl Iterator<Item = &[SeqRange]> {
        self.ranges.chunks(MAX_PURGE_RANGES)
    }

    fn push(&mut self, seq: u64) {
        self.due += 1;
        match self.ranges.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(seq) => r.last = seq,
            _ => self.ranges.push(SeqRange {
                first: seq,
                last: seq,
            }),
        }
    }
}

/// One read as retention sees it: its sequence number in its node's log,
/// capture time, and content (`None` once purged).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub seq: u64,
    pub captured_at: UnixMillis,
    pub content: Option<&'a ReadContent>,
}

/// Decide which of `node`'s reads (in sequence order) to purge: captured
/// before `cutoff`, content still held, and under no active hold in
/// `holds`.
pub fn plan<'a>(
    node: &str,
    reads: impl IntoIterator<Item = Candidate<'a>>,
    cutoff: UnixMillis,
    holds: &[Hold],
) -> PurgePlan {
    let mut p = PurgePlan::default();
    for r in reads {
        let Some(content) = r.content else { continue };
        if r.captured_at >= cutoff {
            continue;
        }
        if held(holds, node, r.captured_at, Some(content)) {
            p.held += 1;
        } else {
            p.push(r.seq);
        }
    }
    p
}

/// How far either side of a purged range a read may share an image with
/// one in it: reads share an image only when they come from one frame,
/// which the node seals consecutively.
pub const IMAGE_NEIGHBOURS: u64 = 32;

/// The images a read names.
pub fn images_of(read: &ReadContent) -> [Hash32; 2] {
    [read.crop_hash, read.overview_hash]
}

/// Which images a purge deletes: every image a purged read named, except
/// those a neighbouring read (within [`IMAGE_NEIGHBOURS`] of a purged
/// range, [`FreedImages::neighbours`]) that still holds its content names.
#[derive(Debug, Default)]
pub struct FreedImages {
    named: std::collections::HashSet<Hash32>,
}

impl FreedImages {
    /// A read whose content is purged.
    pub fn purged(&mut self, read: &ReadContent) {
        self.named.extend(images_of(read));
    }

    /// A neighbouring read that still holds its content: its images stay.
    pub fn kept(&mut self, read: &ReadContent) {
        for h in images_of(read) {
            self.named.remove(&h);
        }
    }

    /// The neighbours of a purged range to look at: the reads before it
    /// and after it, as `(before_first, after_last)`: seqs in
    /// `before_first..range.first` and in `range.last + 1..=after_last`.
    pub fn neighbours(range: &SeqRange) -> (u64, u64) {
        (
            range.first.saturating_sub(IMAGE_NEIGHBOURS),
            range.last.saturating_add(IMAGE_NEIGHBOURS),
        )
    }

    /// The images to delete, in hash order (a tree is walked once).
    pub fn into_sorted(self) -> Vec<Hash32> {
        let mut named: Vec<Hash32> = self.named.into_iter().collect();
        named.sort_unstable_by_key(|h| h.0);
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::holds::{HoldScope, Release};
    use crate::types::{Hash32, Location};

    fn content(plate: &str) -> ReadContent {
        ReadContent {
            location: Location::Unknown,
            camera: "cam0".into(),
            plate: plate.into(),
            confidence: 9_500,
            char_confidence: vec![9_000; plate.len()],
            issuer: Default::default(),
            detector_model: "d".into(),
            ocr_model: "o".into(),
            crop_hash: Hash32([1; 32]),
            overview_hash: Hash32([2; 32]),
        }
    }

    #[test]
    fn a_purge_frees_the_images_of_purged_reads_but_not_those_a_kept_neighbour_names() {
        let frame = content("ABC123");
        let other = ReadContent {
            crop_hash: Hash32([3; 32]),
            overview_hash: Hash32([4; 32]),
            ..content("XYZ9")
        };
        let mut freed = FreedImages::default();
        freed.purged(&frame);
        freed.purged(&other);
        // A read kept just after the range shares the frame's overview.
        freed.kept(&ReadContent {
            crop_hash: Hash32([5; 32]),
            ..content("ABC124")
        });
        assert_eq!(
            freed.into_sorted(),
            vec![Hash32([1; 32]), Hash32([3; 32]), Hash32([4; 32])]
        );
        let (before, after) = FreedImages::neighbours(&SeqRange {
            first: 40,
            last: 50,
        });
        assert_eq!(
            (before, after),
            (40 - IMAGE_NEIGHBOURS, 50 + IMAGE_NEIGHBOURS)
        );
        let (before, _) = FreedImages::neighbours(&SeqRange { first: 3, last: 5 });
        assert_eq!(before, 0, "never below the log's start");
    }

    fn hold(plate: &str) -> Hold {
        Hold {
            id: "h1".into(),
            case: "2026-0042".into(),
            reason: "homicide investigation".into(),
            placed_by: "sgt".into(),
            agency: "CA0000000".into(),
            placed_at: UnixMillis(0),
            placed_on: "hub".into(),
            scope: HoldScope {
                plates: vec![plate.into()],
                ..HoldScope::default()
            },
            released: None,
        }
    }

    #[test]
    fn a_held_read_survives_a_year_and_a_day_and_goes_once_released() {
        let day0 = UnixMillis(1_700_000_000_000);
        let plates = ["AAA111", "HELD1", "BBB222", "CCC333"];
        let contents: Vec<ReadContent> = plates.iter().map(|p| content(p)).collect();
        let reads = |purged: &[u64]| -> Vec<Candidate<'_>> {
            contents
                .iter()
                .enumerate()
                .map(|(i, c)| Candidate {
                    seq: i as u64,
                    captured_at: UnixMillis(day0.0 + i as u64),
                    content: (!purged.contains(&(i as u64))).then_some(c),
                })
                .collect()
        };
        let later = UnixMillis(day0.0 + 366 * DAY_MS);
        let mut holds = vec![hold("HELD1")];
        // Not yet due a day after capture.
        let early = plan(
            "pole-1",
            reads(&[]),
            cutoff(UnixMillis(day0.0 + DAY_MS), 365),
            &holds,
        );
        assert_eq!(early, PurgePlan::default());

        let p = plan("pole-1", reads(&[]), cutoff(later, 365), &holds);
        assert_eq!(
            p.ranges,
            vec![
                SeqRange { first: 0, last: 0 },
                SeqRange { first: 2, last: 3 }
            ]
        );
        assert_eq!((p.due, p.held), (3, 1));

        holds[0].released = Some(Release {
            by: "sgt".into(),
            at: later,
            reason: "case closed".into(),
        });
        let p = plan("pole-1", reads(&[0, 2, 3]), cutoff(later, 365), &holds);
        assert_eq!(p.ranges, vec![SeqRange { first: 1, last: 1 }]);
        assert_eq!((p.due, p.held), (1, 0));
    }

    #[test]
    fn records_are_chunked_to_the_purge_entry_limit() {
        let c = content("AAA111");
        let reads = (0..(MAX_PURGE_RANGES as u64 + 10) * 2).map(|i| Candidate {
            seq: i,
            captured_at: UnixMillis(0),
            // Every other read was purged already: one range per read.
            content: (i % 2 == 0).then_some(&c),
        });
        let p = plan("pole-1", reads, UnixMillis(1), &[]);
        let sizes: Vec<usize> = p.records().map(<[SeqRange]>::len).collect();
        assert_eq!(sizes, vec![MAX_PURGE_RANGES, 10]);
    }
}
