//! Is the system clock synchronised? The kernel knows: NTP daemons
//! (chrony, systemd-timesyncd, ntpd) discipline it through `adjtimex(2)`
//! and clear `STA_UNSYNC` while they hold it; the kernel sets it again, and
//! reports `TIME_ERROR`, when they stop.
//!
//! Reading it needs one libc call. The workspace denies `unsafe_code`; the
//! crates that wrap `adjtimex` safely (`nix` has no wrapper for it) would add
//! far more code than the one call, so this module allows unsafe for that
//! call alone.

/// Whether the system clock is synchronised now: `Some(true)` when an NTP
/// daemon disciplines it, `Some(false)` when the kernel says it is not,
/// `None` where the kernel cannot be asked.
pub fn system_clock_synced() -> Option<bool> {
    imp::synced()
}

#[cfg(target_os = "linux")]
mod imp {
    /// `TIME_ERROR` from `<sys/timex.h>`: the clock is not synchronised.
    const TIME_ERROR: i32 = 5;
    /// `STA_UNSYNC`: the clock is not synchronised.
    const STA_UNSYNC: i32 = 0x0040;

    #[allow(unsafe_code)]
    pub fn synced() -> Option<bool> {
        // SAFETY: `adjtimex` reads and, because `modes` is 0, never changes
        // the kernel clock; it writes only into `tx`, a zeroed, properly
        // aligned `timex` that lives for the whole call.
        let (state, tx) = unsafe {
            let mut tx: libc::timex = std::mem::zeroed();
            tx.modes = 0;
            (libc::adjtimex(&mut tx), tx)
        };
        if state < 0 {
            return None;
        }
        Some(state != TIME_ERROR && tx.status & STA_UNSYNC == 0)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn synced() -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_kernel_answers() {
        // Whatever the machine's clock, Linux gives an answer.
        assert!(system_clock_synced().is_some());
    }
}
