//! The hub's side of a node's legal holds: the logical changes a node's
//! copy has that the hub's lacks ([`HoldsDoc::changes_from`]), and writing
//! an accepted one into the hub's document ([`HoldsDoc::apply`]). What may
//! be accepted is decided in [`crate::control::node_change`]: from a node,
//! only a hold placed by the officer who signed it.

use super::{hold_key, release_key, HoldsDoc, HoldsDocError, HOLD_PREFIX};
use crate::control::holds::Hold;
use crate::control::node_change::{NodeChange, What};
use crate::control::officer::ChangeSignature;
use crate::types::UnixMillis;

/// The name signatures give this document.
pub const DOC_NAME: &str = crate::control::node_change::HOLDS_DOC;

impl HoldsDoc {
    /// The logical changes `theirs` (a node's copy) has that this
    /// document lacks, at `now`: holds it placed, and what no node may
    /// make (a release, a rewritten hold, a tombstone of a hold in force,
    /// an epoch beyond ours). What the node merely has not caught up with
    /// (a hold we dropped after its release) is no change. Each comes with
    /// the signatures the node keeps for it.
    pub fn changes_from(&self, theirs: &HoldsDoc, now: UnixMillis) -> Vec<NodeChange> {
        let mine = self.records();
        let our_gone = self.doc.tombstones();
        let mut out = self
            .doc
            .epoch_and_tombstone_changes(&theirs.doc, DOC_NAME, now, |id| {
                mine.get(id)
                    .filter(|r| r.release.is_none())
                    .map(|ours| What::HoldTombstone { hold: ours.view() })
            });
        for key in theirs.doc.keys() {
            let Some(id) = key.strip_prefix(HOLD_PREFIX) else {
                continue;
            };
            if our_gone.contains_key(id) || theirs.doc.gone(id) {
                continue;
            }
            // Every value the node keeps (each side of a conflict).
            let values = theirs.doc.all_bytes(&key).unwrap_or_default();
            match mine.get(id) {
                Some(ours) => {
                    let rewritten = values.into_iter().filter(|v| *v != ours.bytes);
                    out.extend(
                        theirs
                            .doc
                            .decoded_changes(DOC_NAME, &key, rewritten, |hold| {
                                (What::HoldRewritten { hold }, None)
                            }),
                    );
                    if ours.release.is_some() {
                        continue;
                    }
                    let at = release_key(id);
                    let releases = theirs.doc.all_bytes(&at).unwrap_or_default();
                    out.extend(
                        theirs
                            .doc
                            .decoded_changes(DOC_NAME, &at, releases, |release| {
                                let hold = ours.view();
                                (What::HoldReleased { hold, release }, None)
                            }),
                    );
                }
                None => {
                    // Released there and unknown here: nothing to keep.
                    if theirs.doc.has(&release_key(id)) {
                        continue;
                    }
                    out.extend(
                        theirs
                            .doc
                            .decoded_changes(DOC_NAME, &key, values, |hold: Hold| {
                                let invalid = hold.problem();
                                (What::HoldPlaced { hold }, invalid)
                            }),
                    );
                }
            }
        }
        out
    }

    /// Write an accepted change (a hold placed on a node: its exact value,
    /// and the signature that verified) as this document's own writer.
    pub fn apply(
        &mut self,
        change: &NodeChange,
        signature: &ChangeSignature,
    ) -> Result<(), HoldsDocError> {
        let What::HoldPlaced { hold } = &change.what else {
            return Err(HoldsDocError::Edit(
                "only a hold placed is taken from a node".into(),
            ));
        };
        if change.key != hold_key(&hold.id) {
            return Err(HoldsDocError::BadEntry(change.key.clone()));
        }
        if self.doc.has(&change.key) || self.doc.gone(&hold.id) {
            return Err(HoldsDocError::Exists(hold.id.clone()));
        }
        self.doc.put_bytes(&change.key, change.value.clone())?;
        self.doc
            .put_signature(&change.key, &change.value, signature)?;
        Ok(())
    }
}
