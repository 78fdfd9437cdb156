use super::*;
use crate::store::redb::RedbStore;

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0d8yTe0vb1b+fcZkBO0wdDWW+NVqJvvgLULRTxGe8mc";

use alpr_shared::signer::dev::Deployment;

/// The deployment of these tests (made once).
fn deployment() -> &'static Deployment {
    static D: std::sync::OnceLock<Deployment> = std::sync::OnceLock::new();
    D.get_or_init(|| Deployment::new().expect("a deployment"))
}

fn anchor() -> TrustAnchor {
    deployment().anchor.clone()
}

/// The hub's policy key in [`deployment`].
fn key() -> Arc<HubKey<PolicySigning>> {
    static K: std::sync::OnceLock<Arc<HubKey<PolicySigning>>> = std::sync::OnceLock::new();
    K.get_or_init(|| Arc::new(deployment().key("hub").expect("a policy key")))
        .clone()
}

fn open(path: &std::path::Path, seed: &PolicySettings) -> PolicyService {
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(path).expect("open"));
    PolicyService::open(storage, key(), anchor(), seed, Vec::new()).expect("policy")
}

fn officer(name: &str) -> EdgeOfficer {
    EdgeOfficer {
        username: name.into(),
        agency: "CA0190000".into(),
        title: "Officer".into(),
        password_hash: HASH.into(),
        training_expires: UnixMillis(1_900_000_000_000),
        key: None,
    }
}

#[tokio::test]
async fn version_one_comes_from_the_configuration_with_sane_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(&dir.path().join("hub.redb"), &PolicySettings::default());
    let p = svc.current();
    assert_eq!(p.version(), 1);
    p.verify(&anchor()).expect("signed by the hub");
    let d = p.policy();
    assert_eq!(d.hub_retention_days, 365);
    assert_eq!(d.edge_retention_days, 30);
    assert_eq!(d.max_stale_ms, 72 * 3600 * 1000);
    assert!(d.purpose("homicide").is_some_and(|p| p.case_required));
    assert!(d
        .purpose("stolen-vehicle")
        .is_some_and(|p| !p.case_required));
}

#[tokio::test]
async fn changes_make_new_signed_versions_that_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let seed = PolicySettings::default();
    {
        let svc = open(&path, &seed);
        let mut watch = svc.subscribe();
        let mut s = svc.settings();
        s.edge_retention_days = 14;
        let p = svc.update(s).await.expect("valid change");
        assert_eq!(p.version(), 2);
        assert!(watch.has_changed().expect("open"));
        assert_eq!(watch.borrow_and_update().version(), 2);
        let p = svc
            .set_officers(vec![officer("jdoe")])
            .await
            .expect("stored")
            .expect("changed");
        assert_eq!(p.version(), 3);
        // The same officers again: no new version.
        assert!(svc
            .set_officers(vec![officer("jdoe")])
            .await
            .expect("ok")
            .is_none());
    }
    let svc = open(&path, &seed);
    let p = svc.current();
    assert_eq!(
        p.version(),
        3,
        "the configuration did not change: API changes stay"
    );
    assert_eq!(p.policy().edge_retention_days, 14);
    assert!(p.policy().officer("jdoe").is_some());
}

#[tokio::test]
async fn an_invalid_change_is_refused_with_the_reason_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let svc = open(&path, &PolicySettings::default());
    let mut s = svc.settings();
    s.hub_retention_days = 180;
    let err = svc.update(s).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("365") && msg.contains("34090.6"), "{msg}");
    let mut s = svc.settings();
    s.purposes.clear();
    assert!(svc.update(s).await.is_err());
    let dup = vec![officer("a"), officer("a")];
    assert!(svc.set_officers(dup).await.is_err());
    assert_eq!(svc.current().version(), 1);
    drop(svc);
    assert_eq!(
        open(&path, &PolicySettings::default()).current().version(),
        1
    );
}

#[tokio::test]
async fn a_changed_configuration_makes_the_next_version_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let mut seed = PolicySettings::default();
    assert_eq!(open(&path, &seed).current().version(), 1);
    seed.max_stale = Duration::from_secs(60);
    seed.officers = vec![OfficerSetting {
        username: "ofc1".into(),
        agency: "CA0190000".into(),
        title: "Officer".into(),
        password_hash: HASH.into(),
        training_expires: "2030-01-01T00:00:00Z".into(),
        signing_key: Some(
            "$alpr-officer-key$v=1$m=64,t=1$AQEBAQEBAQEBAQEBAQEBAQ$\
             kJ9dri5h11nA5gdwEcIeh+wpkhobwxvOMDzgSNrXqZg"
                .into(),
        ),
    }];
    let p = open(&path, &seed).current();
    assert_eq!(p.version(), 2);
    assert_eq!(p.policy().max_stale_ms, 60_000);
    let ofc1 = p.policy().officer("ofc1").expect("seeded");
    assert_eq!(
        ofc1.key.as_ref().map(|k| k.m_kib),
        Some(64),
        "the configured signing key goes into the policy"
    );
    // A signing key that is not one stops the start, naming the officer by
    // number (the error reaches the logs: never a username).
    let mut bad = seed.clone();
    bad.officers[0].signing_key = Some("$alpr-officer-key$v=1$nope".into());
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("open"));
    let err = PolicyService::open(storage, key(), anchor(), &bad, Vec::new()).expect_err("refused");
    assert!(err.to_string().contains("officer #1"), "{err}");
    assert!(!err.to_string().contains("ofc1"), "{err}");
    // A configuration that breaks the law does not start.
    seed.hub_retention_days = 90;
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("open"));
    let err =
        PolicyService::open(storage, key(), anchor(), &seed, Vec::new()).expect_err("refused");
    assert!(err.to_string().contains("365"), "{err}");
}

#[test]
fn settings_files_parse_and_print_back() {
    let text = r#"
hub_retention_days = 730
edge_retention_days = 7
max_stale = "24h"

[[purposes]]
code = "homicide"
label = "Homicide"
case_required = true

[[agencies]]
ori = "CA0190000"
name = "Fresno PD"
kind = "in-state-public"

[[agencies]]
ori = "DCFBI0000"
name = "FBI"
kind = "federal"
"#;
    let s = PolicySettings::from_toml(text).expect("parses");
    assert_eq!(s.hub_retention_days, 730);
    assert_eq!(s.max_stale, Duration::from_secs(24 * 3600));
    assert_eq!(s.agencies[1].kind, AgencyKind::Federal);
    let back = PolicySettings::from_toml(&toml::to_string(&s).expect("prints")).expect("parses");
    assert_eq!(back, s);
    assert!(PolicySettings::from_toml("hub_retention = 3").is_err());
}

/// A policy no policy key of this deployment signed (another CA's) is
/// signed again as the next version; another policy key of the same
/// deployment (a second hub sharing the database) keeps it.
#[tokio::test]
async fn a_policy_not_signed_by_this_deployment_is_signed_again_as_the_next_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let seed = PolicySettings::default();
    assert_eq!(open(&path, &seed).current().version(), 1);
    let same: Arc<HubKey<PolicySigning>> = Arc::new(deployment().key("hub").expect("key"));
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("open"));
    let svc =
        PolicyService::open(storage.clone(), same, anchor(), &seed, Vec::new()).expect("opens");
    assert_eq!(
        svc.current().version(),
        1,
        "another key of the deployment's"
    );
    drop((svc, storage));
    let other = Deployment::new().expect("deployment");
    let new_key: Arc<HubKey<PolicySigning>> = Arc::new(other.key("hub").expect("key"));
    let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("open"));
    let svc = PolicyService::open(storage, new_key, other.anchor.clone(), &seed, Vec::new())
        .expect("opens");
    let p = svc.current();
    assert_eq!(p.version(), 2);
    p.verify(&other.anchor).expect("signed with the new key");
}

/// A policy the hub stored before it had a key per purpose (signed with
/// its single key, no certificate with it) is signed again with the policy
/// key as the next version, so edges take it.
#[tokio::test]
async fn a_policy_signed_with_the_single_hub_key_is_signed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let seed = PolicySettings::default();
    let old =
        hex::decode(include_str!("../../../shared/src/control/testdata/policy-v2.hex").trim())
            .expect("hex");
    let old_version = SignedPolicy::decode(&old).expect("decodes").version();
    {
        let storage: Arc<dyn HubStorage> = Arc::new(RedbStore::open(&path).expect("open"));
        storage
            .commit(vec![WriteOp::Policy {
                version: old_version,
                encoded: old,
                seed: Some(seed.seed_hash()),
            }])
            .expect("stored");
    }
    let p = open(&path, &seed).current();
    assert_eq!(p.version(), old_version + 1);
    p.verify(&anchor()).expect("signed with the policy key");
}

#[tokio::test]
async fn show_prints_no_password_hashes_and_set_takes_back_what_show_gives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(&dir.path().join("hub.redb"), &PolicySettings::default());
    svc.set_officers(vec![officer("jdoe")])
        .await
        .expect("stored");
    let p = svc.current();
    let json = crate::policy::summary(&p).to_string();
    let text = crate::cli::policy::render(&p);
    for out in [&json, &text] {
        assert!(out.contains("jdoe"), "{out}");
        assert!(!out.contains("argon2id"), "a password hash is shown: {out}");
    }
    assert!(text.contains("case number required"), "{text}");
    let back = PolicySettings::from_toml(&crate::cli::policy::settings_toml(&p)).expect("parses");
    assert_eq!(back, svc.settings());
}

#[tokio::test]
async fn a_restored_hub_takes_back_the_newer_version_a_node_shows_and_goes_on_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.redb");
    let backup = dir.path().join("backup.redb");
    let seed = PolicySettings::default();
    let held = {
        let svc = open(&path, &seed);
        std::fs::copy(&path, &backup).expect("backup at version 1");
        for days in [20, 21, 22] {
            let mut s = svc.settings();
            s.edge_retention_days = days;
            svc.update(s).await.expect("valid change");
        }
        svc.current()
    };
    assert_eq!(held.version(), 4, "what the nodes hold");
    // Restored: the hub is back at version 1, and would make 2 next.
    std::fs::copy(&backup, &path).expect("restore");
    let svc = open(&path, &seed);
    assert_eq!(svc.current().version(), 1);
    let mut watch = svc.subscribe();
    watch.borrow_and_update();
    // A node shows version 4, which this hub signed: it is in force again
    // (what the edges enforce stays), published and stored.
    let p = svc
        .learn(&held.encode())
        .await
        .expect("learned")
        .expect("taken");
    assert_eq!(*p, *held);
    assert_eq!(svc.current().version(), 4);
    assert_eq!(svc.settings().edge_retention_days, 22);
    assert!(watch.has_changed().expect("open"));
    // Another node showing 4 (or less) changes nothing; the next change
    // goes on from 4, and a restart keeps it.
    assert!(svc.learn(&held.encode()).await.expect("ok").is_none());
    let mut s = svc.settings();
    s.edge_retention_days = 15;
    assert_eq!(svc.update(s).await.expect("valid").version(), 5);
    drop(svc);
    let svc = open(&path, &seed);
    assert_eq!(svc.current().version(), 5);
    assert_eq!(svc.settings().edge_retention_days, 15);
}

#[tokio::test]
async fn a_policy_the_hub_did_not_sign_moves_no_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = open(&dir.path().join("hub.redb"), &PolicySettings::default());
    // A hostile node's: version u64::MAX, signed by another deployment's
    // policy key.
    let mut forged = svc.current().policy().clone();
    forged.version = u64::MAX;
    let theirs: HubKey<PolicySigning> = crate::keys::throwaway().expect("a policy key");
    let forged = forged.sign(&theirs).expect("signs");
    assert!(matches!(
        svc.learn(&forged.encode()).await,
        Err(PolicyError::NotOurs(_))
    ));
    assert!(matches!(
        svc.learn(b"not a policy").await,
        Err(PolicyError::NotOurs(_))
    ));
    assert_eq!(svc.current().version(), 1);
    let s = svc.settings();
    assert_eq!(svc.update(s).await.expect("valid").version(), 2);
}
