//! Alerts and access: alerts raised by reads of this log and the stages of
//! their disposition, signed into the log and listed in `alerts-v1`; and
//! the access records that every look at the node's data leaves in its log.

use alpr_shared::log::alert::Progress;
use alpr_shared::log::{AccessRecord, AlertRecord, DispositionRecord, SignedEntry};
use alpr_shared::types::{TimeSource, UnixMillis};
use redb::{ReadableDatabase, ReadableTable};

use super::tables::{Batch, ALERTS};
use super::writer::{Write, Written};
use super::{db_err, StoreError, StoreHandle};

/// One alert of this node as the alerts table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    /// The alert entry's sequence number in this log.
    pub seq: u64,
    pub progress: Progress,
    pub covert: bool,
    /// Its disposition entries in this log, in order.
    pub dispositions: Vec<u64>,
}

/// Alerts raised by reads of this log, signed into it and listed in the
/// alerts table, in one transaction.
struct RaiseAlerts(Vec<AlertRecord>);

impl Write for RaiseAlerts {
    /// The alert entries' sequence numbers.
    type Out = Vec<u64>;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<Vec<u64>> {
        let mut seqs = Vec::with_capacity(self.0.len());
        let mut failed = None;
        for r in &self.0 {
            let covert = r.covert;
            match b
                .log
                .append_alert(r.clone(), UnixMillis::now(), TimeSource::LocalClock)
            {
                Ok(e) => {
                    b.t.put_entry(&e)?;
                    let row = AlertRow {
                        seq: e.seq(),
                        progress: Progress::default(),
                        covert,
                        dispositions: Vec::new(),
                    };
                    b.t.alerts
                        .insert(&e.seq().to_be_bytes(), alert_row(&row).as_slice())
                        .map_err(db_err)?;
                    seqs.push(e.seq());
                }
                Err(e) => failed = Some(e),
            }
        }
        Ok(match failed {
            Some(e) if seqs.is_empty() => Err(e.into()),
            _ => Ok(seqs),
        })
    }
}

/// One stage of an alert's disposition, if the stage rules allow it.
struct Dispose(DispositionRecord);

impl Write for Dispose {
    /// The disposition entry's seq and the alert's progress.
    type Out = (u64, Progress);
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<(u64, Progress)> {
        let record = &self.0;
        let row =
            b.t.alerts
                .get(&record.alert_seq.to_be_bytes())
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
        let Some(mut row) = row
            .as_deref()
            .and_then(|v| parse_alert_row(record.alert_seq, v))
        else {
            return Ok(Err(StoreError::Alert(format!(
                "no alert {} on this node",
                record.alert_seq
            ))));
        };
        if let Err(e) = row.progress.apply(record.stage) {
            return Ok(Err(StoreError::Alert(e.to_string())));
        }
        let e = match b.log.append_disposition(
            record.clone(),
            UnixMillis::now(),
            TimeSource::LocalClock,
        ) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.into())),
        };
        b.t.put_entry(&e)?;
        row.dispositions.push(e.seq());
        b.t.alerts
            .insert(&record.alert_seq.to_be_bytes(), alert_row(&row).as_slice())
            .map_err(db_err)?;
        Ok(Ok((e.seq(), row.progress)))
    }
}

/// An access record, appended to the node's own log.
struct Access(AccessRecord);

impl Write for Access {
    type Out = SignedEntry;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<SignedEntry> {
        let e = match b
            .log
            .append_access(self.0.clone(), UnixMillis::now(), TimeSource::LocalClock)
        {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.into())),
        };
        b.t.put_entry(&e)?;
        Ok(Ok(e))
    }
}

impl StoreHandle {
    /// Seal `record` into this node's own log and commit it; only then may
    /// the caller return the data the access asked for.
    pub async fn append_access(&self, record: AccessRecord) -> Result<SignedEntry, StoreError> {
        self.ask(Access(record)).await
    }

    /// Sign `records` (alerts raised by reads of this log) into the log and
    /// list them as awaiting disposition; durable when this returns. The
    /// alert entries' sequence numbers.
    pub async fn append_alerts(&self, records: Vec<AlertRecord>) -> Result<Vec<u64>, StoreError> {
        self.ask(RaiseAlerts(records)).await
    }

    /// As [`Self::append_alerts`], for a caller on a plain thread.
    pub fn append_alerts_blocking(
        &self,
        records: Vec<AlertRecord>,
    ) -> Result<Vec<u64>, StoreError> {
        self.ask_blocking(RaiseAlerts(records))
    }

    /// Record one stage of an alert's disposition, if the stage rules
    /// ([`Progress`]) allow it now; durable when this returns. The
    /// disposition entry's sequence number and the alert's progress.
    pub async fn dispose_alert(
        &self,
        record: DispositionRecord,
    ) -> Result<(u64, Progress), StoreError> {
        self.ask(Dispose(record)).await
    }

    /// The alerts this node raised, newest first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)?.rev().take(limit) {
            let (k, v) = row.map_err(db_err)?;
            let row = parse_alert_row(u64::from_be_bytes(*k.value()), v.value())
                .ok_or_else(|| StoreError::Corrupt("alerts table row".into()))?;
            out.push(row);
        }
        Ok(out)
    }

    /// One alert's row, if this node raised it.
    pub fn alert_row(&self, seq: u64) -> Result<Option<AlertRow>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(ALERTS).map_err(db_err)?;
        let Some(v) = t.get(&seq.to_be_bytes()).map_err(db_err)? else {
            return Ok(None);
        };
        parse_alert_row(seq, v.value())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt("alerts table row".into()))
    }
}

/// An alerts-table row: progress ‖ covert ‖ disposition seqs.
fn alert_row(r: &AlertRow) -> Vec<u8> {
    let mut v = r.progress.encode().to_vec();
    v.push(u8::from(r.covert));
    for s in &r.dispositions {
        v.extend_from_slice(&s.to_be_bytes());
    }
    v
}

fn parse_alert_row(seq: u64, v: &[u8]) -> Option<AlertRow> {
    let progress = Progress::decode(v.get(..3)?)?;
    let covert = v.get(3).copied()? != 0;
    let rest = v.get(4..)?;
    if rest.len() % 8 != 0 || rest.len() > 24 {
        return None;
    }
    let dispositions = rest
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
        .map(u64::from_be_bytes)
        .collect();
    Some(AlertRow {
        seq,
        progress,
        covert,
        dispositions,
    })
}
