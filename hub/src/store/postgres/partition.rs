//! Monthly partitions of `entries` and `reads` (by time of capture), made
//! on demand before the commit that first needs one. Rows of a month no
//! partition covers would land in the default partition, and that month's
//! partition could then never be made; so every month from 1970 to 9999
//! gets its own when first needed, and the default partition holds only
//! what lies beyond.

use std::collections::HashSet;
use std::sync::Mutex;

use alpr_shared::types::UnixMillis;

use super::pg_err;
use crate::store::StoreError;

const DAY_MS: i64 = 86_400_000;
/// The first year past the monthly partitions.
const END_YEAR: i64 = 10_000;

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Month {
    year: i64,
    /// 1 to 12.
    month: i64,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; years
/// counted from March so the leap day ends the year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil (year, month) of a day counted from 1970-01-01.
fn civil_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The column value of a capture time (times past `i64::MAX` ms, which no
/// clock gives, sort last).
pub(super) fn at_col(at: UnixMillis) -> i64 {
    i64::try_from(at.0).unwrap_or(i64::MAX)
}

impl Month {
    /// The month a capture time falls in, if it has a partition of its own.
    pub(super) fn of(at: UnixMillis) -> Option<Month> {
        let (year, month) = civil_month(at_col(at).div_euclid(DAY_MS));
        (year < END_YEAR).then_some(Month { year, month })
    }

    /// Its first millisecond and the first of the next month.
    fn bounds(self) -> (i64, i64) {
        let next = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        (
            days_from_civil(self.year, self.month, 1) * DAY_MS,
            days_from_civil(next.0, next.1, 1) * DAY_MS,
        )
    }

    fn suffix(self) -> String {
        format!("{:04}_{:02}", self.year, self.month)
    }
}

/// The months this process knows have their partitions.
#[derive(Debug, Default)]
pub(super) struct Partitions {
    made: Mutex<HashSet<Month>>,
}

impl Partitions {
    /// Make the partitions of `months` that this process has not seen made
    /// (another hub may be making them at the same moment: whoever comes
    /// second finds them there).
    pub(super) async fn ensure(
        &self,
        client: &tokio_postgres::Client,
        months: impl IntoIterator<Item = Month>,
    ) -> Result<(), StoreError> {
        let missing: Vec<Month> = {
            let made = self
                .made
                .lock()
                .map_err(|_| StoreError::Panicked("partition list poisoned".into()))?;
            let mut m: Vec<Month> = months.into_iter().filter(|m| !made.contains(m)).collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        for month in missing {
            let (from, to) = month.bounds();
            for table in ["entries", "reads"] {
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS {table}_{} PARTITION OF {table} \
                     FOR VALUES FROM ({from}) TO ({to})",
                    month.suffix()
                );
                if let Err(e) = client.batch_execute(&sql).await {
                    use tokio_postgres::error::SqlState;
                    let raced = e.code().is_some_and(|c| {
                        *c == SqlState::DUPLICATE_TABLE || *c == SqlState::UNIQUE_VIOLATION
                    });
                    if !raced {
                        return Err(pg_err(format!(
                            "making partition {table}_{}: {e}",
                            month.suffix()
                        )));
                    }
                }
            }
            self.made
                .lock()
                .map_err(|_| StoreError::Panicked("partition list poisoned".into()))?
                .insert(month);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_the_calendar_bounds() {
        // 2026-11-30T02:50:17Z.
        let m = Month::of(UnixMillis(1_796_007_017_000)).expect("a month");
        assert_eq!((m.year, m.month), (2026, 11));
        let (from, to) = m.bounds();
        assert_eq!(from, 1_793_491_200_000); // 2026-11-01
        assert_eq!(to, 1_796_083_200_000); // 2026-12-01
        let epoch = Month::of(UnixMillis(5_000)).expect("a month");
        assert_eq!((epoch.year, epoch.month, epoch.bounds().0), (1970, 1, 0));
        let leap = Month::of(UnixMillis(1_709_164_800_000)).expect("a month"); // 2024-02-29
        assert_eq!((leap.year, leap.month), (2024, 2));
        assert_eq!(leap.bounds().1, 1_709_251_200_000); // 2024-03-01
        assert_eq!(Month::of(UnixMillis(u64::MAX)), None);
        // Every month's end is the next one's start.
        let dec = Month {
            year: 1999,
            month: 12,
        };
        let jan = Month {
            year: 2000,
            month: 1,
        };
        assert_eq!(dec.bounds().1, jan.bounds().0);
    }
}
