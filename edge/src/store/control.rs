//! Control documents the hub sends and officers change on the node: the
//! policy (`policy-v1`), legal holds (`holds-v1`) and local hotlist entries
//! (`hotlist-local-v1`). Changes go through the writer, so they never race;
//! the documents' own rules (merging, signing, limits) live in `shared`.

use alpr_shared::control::holds::Hold;
use alpr_shared::control::holds_doc::HoldsDoc;
use alpr_shared::control::SignedPolicy;
use alpr_shared::hotlist::local::{LocalEntriesDoc, MAX_LOCAL_DOC_BYTES};
use alpr_shared::types::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition};
use tokio::sync::watch;

use super::tables::{Batch, HOLDS, HOTLIST_LOCAL, POLICY};
use super::writer::{Write, Written};
use super::{db_err, StoreError, StoreHandle};

/// The officer who signs a change made on the node (their session's key;
/// the hub takes no unsigned change).
pub type Signer = Option<std::sync::Arc<alpr_shared::control::officer::OfficerSigner>>;

/// A change to the node's local hotlist entries, made in the store's
/// writer so changes never race.
#[derive(Debug)]
pub enum LocalEntriesChange {
    /// Merge a saved document (the hub's).
    Merge { doc: Vec<u8> },
    /// Add an entry here.
    Add {
        id: String,
        fields: alpr_shared::hotlist::local::EntryFields,
        author: String,
        agency: String,
        rules: alpr_shared::control::policy::HotlistPolicy,
        signer: Signer,
    },
    /// Change fields of an entry.
    Edit {
        id: String,
        fields: alpr_shared::hotlist::local::EntryFields,
        by: String,
        rules: alpr_shared::control::policy::HotlistPolicy,
        signer: Signer,
    },
    /// Remove an entry for good.
    Remove {
        id: String,
        removal: alpr_shared::hotlist::Removal,
        signer: Signer,
    },
}

/// A change to the node's legal holds, made in the store's writer so
/// changes never race.
#[derive(Debug)]
pub enum HoldsChange {
    /// Merge a saved document; `from_hub`: it is the hub's, so the holds
    /// count as refreshed now.
    Merge { doc: Vec<u8>, from_hub: bool },
    /// Place a hold here, signed by the officer placing it.
    Add {
        hold: Box<alpr_shared::control::holds::Hold>,
        signer: Signer,
    },
}

/// Store a policy (verified by the sync core) and when it was refreshed,
/// or (without a policy) only the refresh time.
struct StorePolicy {
    encoded: Option<Vec<u8>>,
    refreshed_at: UnixMillis,
}

impl Write for StorePolicy {
    type Out = ();
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<()> {
        if let Some(p) = &self.encoded {
            b.t.policy.insert("current", p.as_slice()).map_err(db_err)?;
        }
        b.t.policy
            .insert("refreshed-at", self.refreshed_at.0.to_be_bytes().as_slice())
            .map_err(db_err)?;
        Ok(Ok(()))
    }
}

impl LocalEntriesChange {
    /// Apply this change to `doc`; whether it changed.
    fn apply(&self, doc: &mut LocalEntriesDoc, now: UnixMillis) -> Result<bool, StoreError> {
        let signer = match self {
            LocalEntriesChange::Merge { .. } => &None,
            LocalEntriesChange::Add { signer, .. }
            | LocalEntriesChange::Edit { signer, .. }
            | LocalEntriesChange::Remove { signer, .. } => signer,
        };
        if let Some(s) = signer {
            doc.sign_as(s.clone());
        }
        match self {
            LocalEntriesChange::Merge { doc: other } => Ok(doc.merge_bytes(other, now)?),
            LocalEntriesChange::Add {
                id,
                fields,
                author,
                agency,
                rules,
                ..
            } => {
                doc.add(id, fields.clone(), author, agency, rules, now)?;
                Ok(true)
            }
            LocalEntriesChange::Edit {
                id,
                fields,
                by,
                rules,
                ..
            } => {
                doc.edit(id, fields.clone(), by, rules, now)?;
                Ok(true)
            }
            LocalEntriesChange::Remove { id, removal, .. } => {
                doc.remove(id, removal.clone())?;
                Ok(true)
            }
        }
    }
}

impl Write for LocalEntriesChange {
    /// The saved document, if it changed.
    type Out = Option<Vec<u8>>;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<Option<Vec<u8>>> {
        change_doc(&mut b.t.hotlist_local, |stored| {
            let mut doc = match stored {
                Some(b) => LocalEntriesDoc::load(b)?,
                None => LocalEntriesDoc::new(),
            };
            if !self.apply(&mut doc, UnixMillis::now())? {
                return Ok(None);
            }
            let saved = doc.save();
            // The hub refuses a document over the limit.
            if saved.len() > MAX_LOCAL_DOC_BYTES {
                return Err(
                    alpr_shared::hotlist::local::LocalDocError::TooLarge(saved.len()).into(),
                );
            }
            Ok(Some(saved))
        })
    }
}

impl Write for HoldsChange {
    /// The saved document, if it changed.
    type Out = Option<Vec<u8>>;
    fn write(&self, b: &mut Batch<'_, '_>) -> Written<Option<Vec<u8>>> {
        let saved = change_doc(&mut b.t.holds, |stored| {
            let mut doc = match stored {
                Some(b) => HoldsDoc::load(b)?,
                None => HoldsDoc::new(),
            };
            let changed = match self {
                HoldsChange::Merge { doc: other, .. } => {
                    doc.merge_bytes(other, UnixMillis::now())?
                }
                HoldsChange::Add { hold, signer } => {
                    if let Some(s) = signer {
                        doc.sign_as(s.clone());
                    }
                    doc.add(hold.as_ref().clone())?;
                    true
                }
            };
            Ok(changed.then(|| doc.save()))
        })?;
        if saved.is_ok() && matches!(self, HoldsChange::Merge { from_hub: true, .. }) {
            b.t.holds
                .insert("refreshed-at", UnixMillis::now().0.to_be_bytes().as_slice())
                .map_err(db_err)?;
        }
        Ok(saved)
    }
}

/// Change the document a table keeps under "doc": `change` takes the saved
/// bytes and gives the new ones if it changed them (then they are saved),
/// or refuses the change (then nothing is).
fn change_doc(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    change: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError>,
) -> Written<Option<Vec<u8>>> {
    let stored = table
        .get("doc")
        .map_err(db_err)?
        .map(|v| v.value().to_vec());
    let saved = match change(stored.as_deref()) {
        Ok(saved) => saved,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(bytes) = &saved {
        table.insert("doc", bytes.as_slice()).map_err(db_err)?;
    }
    Ok(Ok(saved))
}

impl StoreHandle {
    /// Store a policy the sync core verified (a newer version than held),
    /// refreshed now; durable when this returns.
    pub async fn store_policy(
        &self,
        p: &SignedPolicy,
        refreshed_at: UnixMillis,
    ) -> Result<(), StoreError> {
        self.ask(StorePolicy {
            encoded: Some(p.encode()),
            refreshed_at,
        })
        .await
    }

    /// The hub confirmed the policy held.
    pub async fn policy_refreshed(&self, at: UnixMillis) -> Result<(), StoreError> {
        self.ask(StorePolicy {
            encoded: None,
            refreshed_at: at,
        })
        .await
    }

    /// Change the legal holds (merge a document, or place a hold); durable
    /// when this returns. The saved document if it changed.
    pub async fn change_holds(&self, change: HoldsChange) -> Result<Option<Vec<u8>>, StoreError> {
        let placed = matches!(change, HoldsChange::Add { .. });
        let r = self.ask(change).await;
        if placed && r.is_ok() {
            self.holds_placed.send_modify(|n| *n += 1);
        }
        r
    }

    /// Change the local hotlist entries (merge the hub's document, or add,
    /// edit, remove an entry); durable when this returns. The saved
    /// document if it changed.
    pub async fn change_local_entries(
        &self,
        change: LocalEntriesChange,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.ask(change).await;
        if matches!(r, Ok(Some(_))) {
            self.local_changed.send_modify(|n| *n += 1);
        }
        r
    }

    /// Changes with each durable change of the local hotlist entries.
    pub fn watch_local_entries(&self) -> watch::Receiver<u64> {
        self.local_changed.subscribe()
    }

    /// The saved local hotlist entries document, if any.
    pub fn local_entries_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.saved_doc(HOTLIST_LOCAL)
    }

    /// Every local hotlist entry this node knows (removed and expired ones
    /// until the hub's compaction drops them), sorted by id; the matcher
    /// takes those `active(now)`.
    pub fn local_entries(&self) -> Result<Vec<alpr_shared::hotlist::LocalEntry>, StoreError> {
        Ok(match self.local_entries_doc()? {
            Some(bytes) => LocalEntriesDoc::load(&bytes)?.entries(),
            None => Vec::new(),
        })
    }

    /// Changes with each hold placed on this node.
    pub fn watch_holds_placed(&self) -> watch::Receiver<u64> {
        self.holds_placed.subscribe()
    }

    /// The saved legal holds document, if any.
    pub fn holds_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.saved_doc(HOLDS)
    }

    /// The document `table` keeps under "doc", if any.
    fn saved_doc(
        &self,
        table: TableDefinition<&'static str, &'static [u8]>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(table).map_err(db_err)?;
        Ok(t.get("doc").map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// Every legal hold this node knows (released ones too, sorted by id),
    /// and when it last merged the hub's holds. Retention purges nothing
    /// an active one covers (`alpr_shared::control::holds::held`).
    pub fn holds(&self) -> Result<(Vec<Hold>, Option<UnixMillis>), StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(HOLDS).map_err(db_err)?;
        let holds = match t.get("doc").map_err(db_err)? {
            Some(v) => HoldsDoc::load(v.value())?.holds(),
            None => Vec::new(),
        };
        let at = refreshed_at(&t)?;
        Ok((holds, at))
    }

    /// The policy held (it was verified against the hub's key before it
    /// was stored) and when the hub last confirmed it.
    pub fn policy(&self) -> Result<Option<(SignedPolicy, Option<UnixMillis>)>, StoreError> {
        let tx = self.db.get()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(POLICY).map_err(db_err)?;
        let Some(bytes) = t.get("current").map_err(db_err)? else {
            return Ok(None);
        };
        let p = SignedPolicy::decode(bytes.value())
            .map_err(|e| StoreError::Corrupt(format!("stored policy: {e}")))?;
        let at = refreshed_at(&t)?;
        Ok(Some((p, at)))
    }
}

/// When the hub last confirmed a document ("refreshed-at", ms BE), if ever.
fn refreshed_at(
    t: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
) -> Result<Option<UnixMillis>, StoreError> {
    Ok(t.get("refreshed-at")
        .map_err(db_err)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map(|b| UnixMillis(u64::from_be_bytes(b))))
}
