//! A log's verdict that waits for the hub's purge records.

use super::*;

/// A log's verdict waiting for the hub's purge records
/// ([`LogVerifier::finish_awaiting_hub`]).
#[derive(Debug)]
pub(crate) struct AwaitingHubPurges {
    pub(super) report: LogReport,
    pub(super) unrecorded: RangeSet,
}

impl AwaitingHubPurges {
    pub(crate) fn device(&self) -> &str {
        &self.report.device
    }

    /// The verdict: a read purged without a record in its own log is
    /// purged with a record when `hub` (the ranges the hub signed that it
    /// purged from this log, checked by the caller) covers it, and a fault
    /// otherwise.
    pub(crate) fn resolve(mut self, hub: Option<&RangeSet>) -> LogReport {
        for (first, last) in hub.into_iter().flat_map(RangeSet::iter) {
            self.report.purged += self.unrecorded.remove(first, last);
        }
        while let Some((first, last)) = self.unrecorded.pop_first() {
            for seq in first..=last {
                if self.report.faults.len() >= MAX_FAULTS {
                    self.report.faults_omitted += last - seq + 1;
                    break;
                }
                self.report.fault(Fault::PurgedWithoutRecord { seq });
            }
        }
        self.report
    }
}
