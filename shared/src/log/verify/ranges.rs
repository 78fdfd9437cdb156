//! Disjoint inclusive ranges of sequence numbers.

use super::*;

/// Disjoint inclusive ranges of sequence numbers.
#[derive(Debug, Default)]
pub(crate) struct RangeSet(BTreeMap<u64, u64>);

impl RangeSet {
    pub(crate) fn insert(&mut self, first: u64, last: u64) {
        let (mut first, mut last) = (first, last);
        if let Some((&f, &l)) = self.0.range(..=first).next_back() {
            if l.saturating_add(1) >= first {
                first = f;
                last = last.max(l);
                self.0.remove(&f);
            }
        }
        while let Some((&f, &l)) = self.0.range(first..).next() {
            if f > last.saturating_add(1) {
                break;
            }
            last = last.max(l);
            self.0.remove(&f);
        }
        self.0.insert(first, last);
    }

    /// Remove `first..=last`; how many members were removed.
    pub(super) fn remove(&mut self, first: u64, last: u64) -> u64 {
        let mut removed = 0;
        let start = self
            .0
            .range(..=first)
            .next_back()
            .map_or(first, |(&f, _)| f);
        let hits: Vec<(u64, u64)> = self
            .0
            .range(start..=last)
            .map(|(&f, &l)| (f, l))
            .filter(|&(_, l)| l >= first)
            .collect();
        for (f, l) in hits {
            self.0.remove(&f);
            if f < first {
                self.0.insert(f, first - 1);
            }
            if l > last {
                self.0.insert(last + 1, l);
            }
            removed += l.min(last) - f.max(first) + 1;
        }
        removed
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The ranges, `(first, last)`, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|(&f, &l)| (f, l))
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.0
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &l)| seq <= l)
    }

    pub(super) fn pop_first(&mut self) -> Option<(u64, u64)> {
        self.0.pop_first()
    }
}
