use super::*;
use crate::search::{search, SearchRequest};
use alpr_shared::control::{Policy, Purpose, POLICY_FORMAT};
use alpr_shared::crypto::SecretKey;
use alpr_shared::log::EntryKind;
use alpr_shared::types::{DeviceId, Location, ReadContent, TimeSource};

/// A cheap argon2id hash (tests only: the node checks whatever parameters
/// the PHC string names).
/// An officer key of `password` with cheap parameters (tests only).
pub(crate) fn cheap_key(password: &str) -> alpr_shared::control::officer::OfficerKey {
    alpr_shared::control::officer::OfficerKey::derive(password, [1; 16], 64, 1)
        .expect("derive")
        .0
}

fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
    let params = argon2::Params::new(64, 1, 1, None).expect("params");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

fn policy(version: u64, officers: Vec<EdgeOfficer>, max_stale_ms: u64) -> SignedPolicy {
    Policy {
        format: POLICY_FORMAT,
        version,
        issued_at: UnixMillis::now(),
        hub_retention_days: 365,
        edge_retention_days: 30,
        max_stale_ms,
        officers,
        agencies: Vec::new(),
        revoked_nodes: Vec::new(),
        hotlists: Default::default(),
        purposes: vec![
            Purpose {
                code: "stolen-vehicle".into(),
                label: "Stolen vehicle".into(),
                case_required: false,
            },
            Purpose {
                code: "homicide".into(),
                label: "Homicide".into(),
                case_required: true,
            },
        ],
    }
    .sign(&alpr_shared::signer::dev::throwaway().expect("a policy key"))
    .expect("valid")
}

fn officer(name: &str, password: &str, trained_until: UnixMillis) -> EdgeOfficer {
    EdgeOfficer {
        username: name.into(),
        agency: "CA0190000".into(),
        title: "Officer".into(),
        password_hash: cheap_hash(password),
        training_expires: trained_until,
        key: Some(cheap_key(password)),
    }
}

struct Node {
    _dir: tempfile::TempDir,
    store: StoreHandle,
    access: EdgeAccess,
}

fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::from_bytes(&[9; 32]);
    let public = key.public();
    let (store, _join) = StoreHandle::open(
        &dir.path().join("edge.redb"),
        key,
        DeviceId::new("veh-1").expect("valid"),
    )
    .expect("store");
    let access = EdgeAccess::new(store.clone(), public);
    Node {
        _dir: dir,
        store,
        access,
    }
}

fn later() -> UnixMillis {
    UnixMillis(UnixMillis::now().0 + 365 * 24 * 3600 * 1000)
}

/// The access entries of the node's log, in order.
fn accesses(store: &StoreHandle) -> Vec<AccessRecord> {
    store
        .entries_from(0, 10_000)
        .expect("entries")
        .into_iter()
        .filter_map(|e| match e.header.kind {
            EntryKind::Access(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn no_policy_no_login_and_the_refusal_is_logged() {
    let n = node();
    let err = n.access.login("jdoe", "pw").await.expect_err("refused");
    assert!(err.contains("no policy"), "{err}");
    let log = accesses(&n.store);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].action, AccessAction::LoginFailed);
    assert_eq!(log[0].user, "jdoe");
}

#[tokio::test]
async fn an_officer_logs_in_and_each_refusal_says_why() {
    let n = node();
    let p = policy(
        1,
        vec![
            officer("jdoe", "right", later()),
            officer("lapsed", "pw", UnixMillis(1_000)),
        ],
        3_600_000,
    );
    n.store
        .store_policy(&p, UnixMillis::now())
        .await
        .expect("stored");
    let ok = n.access.login("jdoe", "right").await.expect("logged in");
    assert_eq!(ok.policy_version, 1);
    assert!(n.access.session(&ok.token, UnixMillis::now()).is_ok());
    let e = n.access.login("jdoe", "wrong").await.expect_err("refused");
    assert!(e.contains("wrong password"), "{e}");
    let e = n.access.login("nobody", "x").await.expect_err("refused");
    assert!(e.contains("not an officer"), "{e}");
    let e = n.access.login("lapsed", "pw").await.expect_err("refused");
    assert!(e.contains("training lapsed"), "{e}");
    n.access.logout(&ok.token).await.expect("logged out");
    assert!(n.access.session(&ok.token, UnixMillis::now()).is_err());
    let log = accesses(&n.store);
    let actions: Vec<_> = log.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![
            AccessAction::Login,
            AccessAction::LoginFailed,
            AccessAction::LoginFailed,
            AccessAction::LoginFailed,
            AccessAction::Logout
        ]
    );
    assert_eq!(log[0].agency, "CA0190000");
}

#[tokio::test]
async fn a_stale_policy_refuses_logins_saying_since_when() {
    let n = node();
    let p = policy(1, vec![officer("jdoe", "pw", later())], 60_000);
    let long_ago = UnixMillis(UnixMillis::now().0 - 3_600_000);
    n.store.store_policy(&p, long_ago).await.expect("stored");
    let e = n.access.login("jdoe", "pw").await.expect_err("refused");
    assert!(e.contains("has not reached the hub since"), "{e}");
    assert!(e.contains(&long_ago.to_string()), "{e}");
    // The hub confirms it: logins work again.
    n.store
        .policy_refreshed(UnixMillis::now())
        .await
        .expect("refreshed");
    n.access.login("jdoe", "pw").await.expect("logged in");
}

#[tokio::test]
async fn password_guessing_is_throttled_per_user() {
    let n = node();
    let p = policy(1, vec![officer("jdoe", "pw", later())], 3_600_000);
    n.store
        .store_policy(&p, UnixMillis::now())
        .await
        .expect("stored");
    for i in 0..FAILURES_BEFORE_LOCKOUT {
        let e = n
            .access
            .login("jdoe", &format!("guess{i}"))
            .await
            .expect_err("wrong");
        assert!(e.contains("wrong password"), "{e}");
    }
    // Locked now: even the right password is refused.
    let e = n.access.login("jdoe", "pw").await.expect_err("locked");
    assert!(e.contains("locked until"), "{e}");
    assert!(accesses(&n.store)
        .iter()
        .any(|r| r.action == AccessAction::Lockout));
}

#[tokio::test]
async fn a_removed_officer_loses_the_session_and_cannot_log_in() {
    let n = node();
    let p1 = policy(1, vec![officer("jdoe", "pw", later())], 3_600_000);
    n.store
        .store_policy(&p1, UnixMillis::now())
        .await
        .expect("stored");
    let ok = n.access.login("jdoe", "pw").await.expect("logged in");
    let p2 = policy(2, vec![], 3_600_000);
    n.store
        .store_policy(&p2, UnixMillis::now())
        .await
        .expect("stored");
    let e = n
        .access
        .session(&ok.token, UnixMillis::now())
        .expect_err("ended");
    assert!(e.contains("no longer an officer"), "{e}");
    let e = n.access.login("jdoe", "pw").await.expect_err("removed");
    assert!(e.contains("not an officer in policy v2"), "{e}");
}

fn read(plate: &str) -> ReadContent {
    ReadContent {
        location: Location::Gps {
            lat_e7: 367_378_000,
            lon_e7: -1_197_871_000,
            accuracy_cm: 500,
        },
        camera: "front".into(),
        plate: plate.into(),
        confidence: 9500,
        char_confidence: vec![9500; plate.len()],
        issuer: Default::default(),
        detector_model: "det".into(),
        ocr_model: "ocr".into(),
        crop_hash: alpr_shared::crypto::sha256(plate.as_bytes()),
        overview_hash: alpr_shared::crypto::sha256(b"overview"),
    }
}

#[tokio::test]
async fn searches_need_a_purpose_and_a_case_where_policy_asks_and_are_logged_first() {
    let n = node();
    for plate in ["7ABC123", "7ABC128", "5XYZ999"] {
        n.store
            .append_read(
                read(plate),
                UnixMillis::now(),
                TimeSource::Ntp,
                plate.as_bytes().to_vec(),
                b"overview".to_vec(),
            )
            .await
            .expect("stored");
    }
    let p = policy(1, vec![officer("jdoe", "pw", later())], 3_600_000);
    n.store
        .store_policy(&p, UnixMillis::now())
        .await
        .expect("stored");
    let token = n.access.login("jdoe", "pw").await.expect("login").token;
    let req = |pattern: &str, purpose: Option<&str>, case: Option<&str>| SearchRequest {
        token: token.clone(),
        pattern: pattern.into(),
        purpose: purpose.map(Into::into),
        case: case.map(Into::into),
        ..SearchRequest::default()
    };
    let e = search(&n.access, req("7ABC123", None, None))
        .await
        .expect_err("no purpose");
    assert!(e.contains("no purpose"), "{e}");
    let e = search(&n.access, req("7ABC123", Some("curiosity"), None))
        .await
        .expect_err("not a purpose");
    assert!(e.contains("not a purpose"), "{e}");
    let e = search(&n.access, req("7ABC123", Some("homicide"), None))
        .await
        .expect_err("case needed");
    assert!(e.contains("case number is required"), "{e}");
    let a = search(&n.access, req("7ABC12?", Some("homicide"), Some("24-001")))
        .await
        .expect("allowed");
    let plates: Vec<_> = a.hits.iter().map(|h| h.plate.as_str()).collect();
    assert_eq!(plates, vec!["7ABC123", "7ABC128"]);
    assert!(a.hits.iter().all(|h| h.signature_verified && h.crop_held));
    assert!(a.hits.iter().all(|h| h.crop_jpeg_hex.is_none()));
    let mut with = req("7ABC123", Some("stolen-vehicle"), None);
    with.with_crops = true;
    let a = search(&n.access, with).await.expect("crops");
    assert_eq!(
        a.hits[0].crop_jpeg_hex.as_deref(),
        Some(hex::encode(b"7ABC123").as_str()),
        "the crop's bytes come back"
    );
    let a = search(&n.access, req("7ABC123", Some("stolen-vehicle"), None))
        .await
        .expect("exact");
    assert_eq!(a.hits.len(), 1);
    // Near the reads, and far from them.
    let mut near = req("*", Some("stolen-vehicle"), None);
    near.pattern = "*99*".into();
    near.near = Some((36.7378, -119.7871));
    near.radius_m = Some(500.0);
    assert_eq!(
        search(&n.access, near.clone())
            .await
            .expect("ok")
            .hits
            .len(),
        1
    );
    near.near = Some((34.0, -118.0));
    assert!(search(&n.access, near).await.expect("ok").hits.is_empty());

    let log: Vec<_> = accesses(&n.store)
        .into_iter()
        .filter(|r| r.action == AccessAction::Search)
        .collect();
    assert_eq!(log.len(), 8, "every search, refused or not, is logged");
    let allowed = &log[3];
    assert!(allowed.allowed());
    assert_eq!(allowed.user, "jdoe");
    assert_eq!(allowed.agency, "CA0190000");
    assert_eq!(allowed.purpose.as_deref(), Some("homicide"));
    assert_eq!(allowed.case.as_deref(), Some("24-001"));
    assert!(allowed.query.contains("plate=7ABC12?"), "{}", allowed.query);
    assert_eq!(allowed.results, 2);
    assert!(!log[0].allowed());
    // No session, no search.
    let mut bad = req("7ABC123", Some("stolen-vehicle"), None);
    bad.token = "not-a-token".into();
    assert!(search(&n.access, bad).await.is_err());
}

#[test]
fn hashes_made_here_verify_and_others_do_not() {
    let h = cheap_hash("secret");
    assert!(verify_password(&h, "secret"));
    assert!(!verify_password(&h, "Secret"));
    assert!(!verify_password("not a hash", "secret"));
}
