//! Accounts and sessions on PostgreSQL ([`AccountStore`]).

use alpr_shared::types::UnixMillis;
use deadpool_postgres::GenericClient;

use super::sql::{execute, query};
use super::write::Commit;
use super::PgStore;
use crate::store::rows::{decode_row, encode};
use crate::store::*;

impl AccountStore for PgStore {
    fn user(&self, username: &str) -> Result<Option<crate::store::UserRecord>, StoreError> {
        self.bytes_of(
            "SELECT bytes FROM users WHERE username = $1",
            Some(username.to_owned()),
        )?
        .map(|b| decode_row(&b, "users"))
        .transpose()
    }

    fn users(&self) -> Result<Vec<crate::store::UserRecord>, StoreError> {
        self.run(move |c| async move {
            query!(c, "SELECT bytes FROM users ORDER BY username")
                .await?
                .iter()
                .map(|r| decode_row(r.get(0), "users"))
                .collect()
        })
    }

    fn user_keys(&self) -> Result<Vec<(String, crate::store::UserKey)>, StoreError> {
        self.run(move |c| async move {
            query!(
                c,
                "SELECT username, bytes FROM user_keys ORDER BY username, public"
            )
            .await?
            .iter()
            .map(|r| Ok((r.get(0), decode_row(r.get(1), "user_keys")?)))
            .collect()
        })
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<crate::store::SessionRecord>, StoreError> {
        let h = hash.to_vec();
        self.run(move |c| async move {
            query!(c, "SELECT bytes FROM sessions WHERE hash = $1", &h)
                .await?
                .first()
                .map(|r| decode_row(r.get(0), "sessions"))
                .transpose()
        })
    }

    fn login_failures(&self, key: &str, since: UnixMillis) -> Result<u64, StoreError> {
        let key = key.to_owned();
        self.run(move |c| async move { super::logins::failures(&c, &key, since).await })
    }

    fn login_lock(&self, key: &str) -> Result<Option<UnixMillis>, StoreError> {
        let key = key.to_owned();
        self.run(move |c| async move { super::logins::locked_until(&c, &key).await })
    }
}

impl Commit<'_> {
    /// [`WriteOp::User`]: create or replace an account.
    pub(super) async fn user(
        &mut self,
        u: crate::store::UserRecord,
    ) -> Result<WriteResult, StoreError> {
        execute!(
            self.tx,
            "INSERT INTO users (username, bytes) VALUES ($1, $2) \
             ON CONFLICT (username) DO UPDATE SET bytes = excluded.bytes",
            &u.username,
            &encode(&u)
        )
        .await?;
        self.changed = true;
        Ok(WriteResult::Done)
    }

    /// [`WriteOp::UserKey`]: keep a user's key once.
    pub(super) async fn user_key(
        &mut self,
        username: String,
        key: crate::store::UserKey,
    ) -> Result<WriteResult, StoreError> {
        execute!(
            self.tx,
            "INSERT INTO user_keys (username, public, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (username, public) DO NOTHING",
            &username,
            &key.key.public.as_slice(),
            &encode(&key)
        )
        .await?;
        self.changed = true;
        Ok(WriteResult::Done)
    }

    /// [`WriteOp::Session`]: keep a session, or end it.
    pub(super) async fn session(
        &mut self,
        hash: [u8; 32],
        session: Option<crate::store::SessionRecord>,
    ) -> Result<WriteResult, StoreError> {
        match session {
            Some(s) => {
                execute!(
                    self.tx,
                    "INSERT INTO sessions (hash, bytes) VALUES ($1, $2) \
                     ON CONFLICT (hash) DO UPDATE SET bytes = excluded.bytes",
                    &hash.as_slice(),
                    &encode(&s)
                )
                .await?
            }
            None => {
                execute!(
                    self.tx,
                    "DELETE FROM sessions WHERE hash = $1",
                    &hash.as_slice()
                )
                .await?
            }
        };
        Ok(WriteResult::Done)
    }
}
