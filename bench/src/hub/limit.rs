//! The machine's own limit for ingest, measured in the same run as the
//! ingest it is set beside: every entry's signature checked with
//! `verify_strict` (the check the hub makes of each entry), on every core
//! and nothing else — no decoding, chain, store or network. The ratio of
//! the ingest rate to it travels between machines whose speed varies.

use std::time::Instant;

use alpr_shared::crypto::{PublicKey, Signature};

/// One edge's entries: its key, and each entry's signed message (the tag
/// and the canonical header) with its signature.
pub(crate) type Signed<'a> = (PublicKey, &'a [(Vec<u8>, Signature)]);

/// Signatures checked per second on every core.
pub(crate) fn verify_limit(edges: &[Signed<'_>]) -> anyhow::Result<f64> {
    let all: Vec<(&PublicKey, &Vec<u8>, &Signature)> = edges
        .iter()
        .flat_map(|(key, entries)| entries.iter().map(move |(m, s)| (key, m, s)))
        .collect();
    anyhow::ensure!(!all.is_empty(), "no entries to check");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = all.len().div_ceil(threads);
    let t = Instant::now();
    let good: usize = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(share)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter(|(key, msg, sig)| key.verify(&[], msg, sig))
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        good == all.len(),
        "{} of {} signatures did not verify",
        all.len() - good,
        all.len()
    );
    Ok(all.len() as f64 / seconds.max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpr_shared::crypto::{tag, SecretKey};

    #[test]
    fn every_signature_counts_and_a_bad_one_is_refused() {
        let key = SecretKey::generate();
        let mut entries: Vec<(Vec<u8>, Signature)> = (0..64u32)
            .map(|i| {
                let msg = [tag::ENTRY_SIG, &i.to_be_bytes()].concat();
                let sig = key.sign(&[], &msg);
                (msg, sig)
            })
            .collect();
        let rate = verify_limit(&[(key.public(), &entries)]).expect("all verify");
        assert!(rate > 0.0);
        entries[10].0.push(0);
        assert!(verify_limit(&[(key.public(), &entries)]).is_err());
    }
}
