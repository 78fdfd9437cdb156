use super::*;

fn users_in(dir: &std::path::Path, config: UsersConfig) -> (Users, Arc<dyn HubStorage>) {
    let storage: Arc<dyn HubStorage> =
        Arc::new(crate::store::redb::RedbStore::open(&dir.join("hub.redb")).expect("open"));
    users_of(storage, config)
}

fn users_of(storage: Arc<dyn HubStorage>, config: UsersConfig) -> (Users, Arc<dyn HubStorage>) {
    // The same log key on every opening: the access log continues only
    // under the key that signed its head.
    let log_key = alpr_shared::signer::dev::Deployment::new()
        .and_then(|d| {
            d.key_for(
                "hub",
                alpr_shared::crypto::SecretKey::from_bytes(&[0x10; 32]),
            )
        })
        .expect("a log key");
    let access = AccessLog::start(storage.clone(), log_key).expect("access log");
    (
        Users::new(storage.clone(), access, config).expect("users"),
        storage,
    )
}

fn config() -> UsersConfig {
    UsersConfig {
        session_idle: Duration::from_secs(600),
        session_max: Duration::from_secs(3600),
        throttle: ThrottleConfig::default(),
    }
}

fn new_user(name: &str, role: Role) -> NewUser {
    NewUser {
        username: name.into(),
        agency: "CA0000001".into(),
        title: "t".into(),
        role,
        password: format!("password-of-{name}"),
        training_completed: "2026-01-01".into(),
        training_expires: "2099-01-01".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_hub_ends_the_session_on_another_sharing_the_database() {
    let db = crate::store::postgres::cluster::test_database().expect("database");
    let open = || -> Arc<dyn HubStorage> {
        Arc::new(crate::store::postgres::PgStore::open(&db.config).expect("open"))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _) = users_of(open(), config());
    let (b, _) = users_of(open(), config());
    let ip: IpAddr = [127, 0, 0, 1].into();
    assert!(a
        .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
        .expect("bootstrap file"));
    let file: BootstrapFile =
        serde_json::from_slice(&std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"))
            .expect("json");
    a.bootstrap(
        &file.token,
        new_user("admin", Role::Administrator),
        ip,
        dir.path(),
    )
    .await
    .expect("bootstrap");
    assert!(b.reload().expect("reload"), "hub b sees the new account");
    let login = a
        .login("admin", "password-of-admin", ip)
        .await
        .expect("login");
    // Hub b serves the session (and keeps it in memory)…
    let caller = b.authenticate(&login.token, ip).expect("a session on b");
    assert_eq!(caller.username, "admin");
    assert!(b.authenticate(&login.token, ip).is_ok());
    // …until it ends on hub a.
    let on_a = a.authenticate(&login.token, ip).expect("a session on a");
    a.logout(&on_a, &login.token).await.expect("logout");
    assert!(
        matches!(
            b.authenticate(&login.token, ip),
            Err(UserError::Unauthorized(_))
        ),
        "a session ended on one hub is refused by the other"
    );
}

#[tokio::test]
async fn the_hub_learns_each_signing_key_when_the_password_passes_and_keeps_them_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, storage) = users_in(dir.path(), config());
    let ip: IpAddr = [127, 0, 0, 1].into();
    let admin = Caller {
        username: "admin".into(),
        agency: "CA0000001".into(),
        role: Role::Administrator,
        title: "t".into(),
        source: "127.0.0.1".into(),
    };
    // Added: the key of the password set.
    users
        .add(&admin, new_user("ofc", Role::Officer))
        .await
        .expect("add");
    let first = users.keys("ofc");
    assert_eq!(first.len(), 1);
    first[0]
        .key
        .unlock("password-of-ofc")
        .expect("the key is the password's");
    // A new password: a new key, and the old one is kept.
    let mut changes = users.subscribe();
    changes.mark_unchanged();
    users
        .passwd(&admin, "ofc", "a brand new password".into())
        .await
        .expect("passwd");
    assert!(changes.has_changed().expect("watch"), "the policy follows");
    let both = users.keys("ofc");
    assert_eq!(both.len(), 2);
    assert_eq!(both[0], first[0], "the old key stays known");
    both[1]
        .key
        .unlock("a brand new password")
        .expect("the current key is the new password's");
    assert_eq!(
        users.current_keys().get("ofc"),
        Some(&both[1].key),
        "the current key is the latest"
    );
    // A user without a key (made before keys) gets one at login.
    let mut old = storage.user("ofc").expect("read").expect("kept");
    old.username = "old.timer".into();
    storage.commit(vec![WriteOp::User(old)]).expect("commit");
    assert!(users.reload().expect("reload"));
    assert!(users.keys("old.timer").is_empty());
    users
        .login("old.timer", "a brand new password", ip)
        .await
        .expect("login");
    let learnt = users.keys("old.timer");
    assert_eq!(learnt.len(), 1);
    learnt[0]
        .key
        .unlock("a brand new password")
        .expect("learnt from the password");
    // All of it is durable.
    drop(users);
    let (again, _) = users_of(storage, config());
    assert_eq!(again.keys("ofc"), both);
    assert_eq!(again.keys("old.timer"), learnt);
}

#[tokio::test]
async fn sessions_follow_the_account_and_changes_notify_subscribers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, storage) = users_in(dir.path(), config());
    let ip: IpAddr = [127, 0, 0, 1].into();
    assert!(users
        .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
        .expect("bootstrap file"));
    let file: BootstrapFile =
        serde_json::from_slice(&std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"))
            .expect("json");
    let mut changes = users.subscribe();
    let admin = users
        .bootstrap(
            &file.token,
            new_user("admin", Role::Administrator),
            ip,
            dir.path(),
        )
        .await
        .expect("bootstrap");
    assert_eq!(admin.role, Role::Administrator);
    assert!(!dir.path().join(BOOTSTRAP_FILE).exists());
    assert!(changes.has_changed().expect("watch"));
    changes.mark_unchanged();
    // Once is all.
    assert!(users
        .bootstrap(
            &file.token,
            new_user("again", Role::Administrator),
            ip,
            dir.path()
        )
        .await
        .is_err());

    let login = users
        .login("admin", "password-of-admin", ip)
        .await
        .expect("login");
    // Only the token's hash is kept.
    assert!(storage
        .session(&token_hash(&login.token))
        .expect("read")
        .is_some());
    let stored = format!("{:?}", storage.users().expect("users"));
    assert!(!stored.contains(&login.token));
    let caller = users.authenticate(&login.token, ip).expect("a session");
    assert_eq!(caller.username, "admin");

    users
        .add(&caller, new_user("ofc", Role::Officer))
        .await
        .expect("add");
    assert!(changes.has_changed().expect("watch"));
    changes.mark_unchanged();
    let ofc = users
        .login("ofc", "password-of-ofc", ip)
        .await
        .expect("login");
    users.authenticate(&ofc.token, ip).expect("a session");
    users
        .train(&caller, "ofc", "2024-01-01", "2025-01-01")
        .await
        .expect("train");
    assert!(changes.has_changed().expect("watch"));
    assert!(matches!(
        users.authenticate(&ofc.token, ip),
        Err(UserError::Forbidden(m)) if m.contains("2025-01-01")
    ));

    users.logout(&caller, &login.token).await.expect("logout");
    assert!(matches!(
        users.authenticate(&login.token, ip),
        Err(UserError::Unauthorized(_))
    ));
    assert!(matches!(
        users.authenticate("not a token", ip),
        Err(UserError::Unauthorized(_))
    ));
}

#[tokio::test]
async fn a_session_past_its_absolute_end_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config();
    c.session_max = Duration::from_millis(1);
    let storage: Arc<dyn HubStorage> =
        Arc::new(crate::store::redb::RedbStore::open(&dir.path().join("hub.redb")).expect("open"));
    let ip: IpAddr = [127, 0, 0, 1].into();
    let now = UnixMillis::now();
    storage
        .commit(vec![WriteOp::User(UserRecord {
            username: "a".into(),
            agency: "X".into(),
            title: "t".into(),
            role: Role::Auditor,
            password_hash: hash_password("password-of-a").expect("hash"),
            training_completed: UnixMillis(0),
            training_expires: UnixMillis(u64::MAX),
            disabled: false,
            created: now,
            updated: now,
        })])
        .expect("user");
    // Accounts stored before the start are known.
    let (users, storage) = users_of(storage, c);
    let login = users.login("a", "password-of-a", ip).await.expect("login");
    while UnixMillis::now() <= login.expires {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(matches!(
        users.authenticate(&login.token, ip),
        Err(UserError::Unauthorized(_))
    ));
    // And it is gone from storage.
    assert!(storage
        .session(&token_hash(&login.token))
        .expect("read")
        .is_none());

    // A session that ends unused is removed at the next login.
    let unused = users.login("a", "password-of-a", ip).await.expect("login");
    while UnixMillis::now() <= unused.expires {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _next = users.login("a", "password-of-a", ip).await.expect("login");
    assert!(storage
        .session(&token_hash(&unused.token))
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn a_session_left_idle_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config();
    c.session_idle = Duration::from_millis(1);
    let (users, _) = users_in(dir.path(), c);
    let ip: IpAddr = [127, 0, 0, 1].into();
    let file = {
        users
            .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
            .expect("bootstrap file");
        let f: BootstrapFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"))
                .expect("json");
        f
    };
    users
        .bootstrap(
            &file.token,
            new_user("a", Role::Administrator),
            ip,
            dir.path(),
        )
        .await
        .expect("bootstrap");
    let login = users.login("a", "password-of-a", ip).await.expect("login");
    let start = UnixMillis::now();
    while UnixMillis::now().0 <= start.0 + 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(matches!(
        users.authenticate(&login.token, ip),
        Err(UserError::Unauthorized(_))
    ));
}

#[tokio::test]
async fn a_page_that_keeps_itself_up_to_date_does_not_keep_its_session_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config();
    c.session_idle = Duration::from_millis(1000);
    let (users, _) = users_in(dir.path(), c);
    let ip: IpAddr = [127, 0, 0, 1].into();
    users
        .prepare_bootstrap(dir.path(), "127.0.0.1:1".parse().expect("addr"))
        .expect("bootstrap file");
    let file: BootstrapFile =
        serde_json::from_slice(&std::fs::read(dir.path().join(BOOTSTRAP_FILE)).expect("read"))
            .expect("json");
    users
        .bootstrap(
            &file.token,
            new_user("a", Role::Administrator),
            ip,
            dir.path(),
        )
        .await
        .expect("bootstrap");
    let login = users.login("a", "password-of-a", ip).await.expect("login");
    users.authenticate(&login.token, ip).expect("used");
    users
        .still_authenticated(&login.token, ip)
        .expect("still a session");
    tokio::time::sleep(Duration::from_millis(600)).await;
    users
        .still_authenticated(&login.token, ip)
        .expect("still within the idle time");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        matches!(
            users.still_authenticated(&login.token, ip),
            Err(UserError::Unauthorized(_))
        ),
        "the checks were not activity: idle since the last use"
    );
}

#[test]
fn passwords_hash_with_argon2id_owasp_parameters_and_verify() {
    let h = hash_password("correct horse battery").expect("hash");
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    assert!(verify_password("correct horse battery", &h));
    assert!(!verify_password("correct horse batterx", &h));
    assert!(!verify_password("anything", "not a hash"));
}

#[test]
fn roles_follow_need_to_know() {
    assert!(Role::Officer.may(Permission::Search));
    assert!(!Role::Officer.may(Permission::ManageUsers));
    assert!(!Role::Officer.may(Permission::ViewNodes));
    assert!(Role::Administrator.may(Permission::ManageUsers));
    assert!(!Role::Administrator.may(Permission::Search));
    assert!(Role::Auditor.may(Permission::VerifyLogs));
    assert!(!Role::Auditor.may(Permission::Search));
    assert!(Role::Supervisor.may(Permission::ReadAudits));
    assert!(!Role::Operator.may(Permission::ReadAudits));
}

#[test]
fn lapsed_training_and_disabled_users_are_refused_with_the_reason() {
    let mut u = UserRecord {
        username: "ofc".into(),
        agency: "CA0000000".into(),
        title: "Officer".into(),
        role: Role::Officer,
        password_hash: String::new(),
        training_completed: parse_date("2024-01-01").expect("date"),
        training_expires: parse_date("2025-01-01").expect("date"),
        disabled: false,
        created: UnixMillis(0),
        updated: UnixMillis(0),
    };
    let now = parse_date("2026-01-01").expect("date");
    let why = u.refusal(now).expect("refused");
    assert!(
        why.contains("training") && why.contains("2025-01-01"),
        "{why}"
    );
    u.training_expires = parse_date("2027-01-01").expect("date");
    assert_eq!(u.refusal(now), None);
    u.disabled = true;
    assert!(u.refusal(now).expect("refused").contains("disabled"));
}
