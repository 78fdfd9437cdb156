//! The deployment PKI as an operator and an auditor use it: `hub pki init`
//! (the CA, the hub's TLS certificate and one signing key per purpose),
//! `hub pki enroll`, openssl reading the files, `hub verify` refusing a node
//! certificate from another CA and a manifest signed with the TLS key, and
//! `hub serve` refusing a key whose certificate is not for its purpose.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alpr_shared::cert::KeyPurpose;
use alpr_shared::crypto::SecretKey;
use alpr_shared::log::bundle::BundleWriter;
use alpr_shared::log::LogWriter;
use alpr_shared::signer::{ExportSigning, HubKey};
use alpr_shared::types::{DeviceId, Hash32, Location, ReadContent, TimeSource, UnixMillis};

/// The workspace's built binary `name` (built by `cargo build --bins`).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hub() -> Command {
    Command::new(bin("hub"))
}

fn init(dir: &Path, org: &str) {
    ok(hub().args(["pki", "init", "--org", org, "--out"]).arg(dir));
}

fn enroll(ca: &Path, device: &str, out: &Path) {
    ok(hub()
        .args(["pki", "enroll", "--ca"])
        .arg(ca)
        .args(["--device", device, "--kind", "vehicle", "--out"])
        .arg(out));
}

/// Load a PEM private key with Python `cryptography`; print its type.
const PY_LOAD: &str = "import sys\n\
from cryptography.hazmat.primitives.serialization import load_pem_private_key\n\
k = load_pem_private_key(open(sys.argv[1], 'rb').read(), None)\n\
print(type(k).__name__.lstrip('_'))\n";

fn openssl_text(cert: &Path) -> String {
    ok(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert))
}

/// Write a small signed log for the node in `node_dir` into a bundle file
/// whose manifest the hub of the PKI in `hub_dir` signs with its export key.
fn bundle_for(node_dir: &Path, hub_dir: &Path, device: &str, out: &Path) {
    bundle_signed_by(node_dir, hub_dir, "export", device, out);
}

/// [`bundle_for`] with the manifest signed by the hub's key `key` (its
/// `<key>.key` under its `<key>.crt`, whatever that certifies).
fn bundle_signed_by(node_dir: &Path, hub_dir: &Path, key: &str, device: &str, out: &Path) {
    let hub_file = |ext: &str| hub_dir.join(format!("{key}.{ext}"));
    let key = SecretKey::from_pkcs8_pem(
        &std::fs::read_to_string(node_dir.join("node.key")).expect("key"),
    )
    .expect("pkcs8");
    let cert_pem = std::fs::read(node_dir.join("node.crt")).expect("cert");
    let der = alpr_shared::cert::pem_certificates(&cert_pem)
        .expect("pem")
        .remove(0);
    let mut log = LogWriter::new(key, DeviceId::new(device).expect("id"));
    let hub_der =
        alpr_shared::cert::pem_certificates(&std::fs::read(hub_file("crt")).expect("crt"))
            .expect("pem")
            .remove(0);
    // As a hub would that signs with this key whatever its certificate.
    let hub_key: HubKey<ExportSigning> = HubKey::unchecked(
        SecretKey::from_pkcs8_pem(&std::fs::read_to_string(hub_file("key")).expect("hub key"))
            .expect("pkcs8"),
        &hub_der,
    )
    .expect("a certificate");
    let mut entries = Vec::new();
    for plate in ["7ABC123", "4XYZ987", "8KLM456"] {
        let e = log
            .append_read(
                ReadContent {
                    location: Location::Gps {
                        lat_e7: 377_749_000,
                        lon_e7: -1_224_194_000,
                        accuracy_cm: 300,
                    },
                    camera: "front".into(),
                    plate: plate.into(),
                    confidence: 9_100,
                    char_confidence: vec![9_100; plate.len()],
                    issuer: Default::default(),
                    detector_model: "test".into(),
                    ocr_model: "test".into(),
                    crop_hash: Hash32::ZERO,
                    overview_hash: Hash32::ZERO,
                },
                UnixMillis::now(),
                TimeSource::Gps,
            )
            .expect("append");
        entries.push(e);
    }
    let mut w = BundleWriter::new(std::fs::File::create(out).expect("create")).expect("bundle");
    w.hub_certificate(&hub_der).expect("hub cert");
    w.certificate(&der).expect("cert");
    w.checkpoint(&log.checkpoint(UnixMillis::now()))
        .expect("checkpoint");
    for e in &entries {
        w.entry(e).expect("entry");
    }
    w.finish_signed(&hub_key, UnixMillis::now())
        .expect("finish");
}

#[test]
fn pki_files_are_standard_and_a_foreign_node_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    init(&ca, "Test PD");
    enroll(&ca, "car-12", &tmp.path().join("car-12"));

    // openssl reads what we wrote.
    let text = openssl_text(&tmp.path().join("car-12/node.crt"));
    assert!(
        text.contains("CN = car-12") || text.contains("CN=car-12"),
        "{text}"
    );
    assert!(
        text.contains("OU = vehicle") || text.contains("OU=vehicle"),
        "{text}"
    );
    assert!(text.contains("ED25519"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    let ca_text = openssl_text(&ca.join("ca.crt"));
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
    // Each signing key's certificate names its purpose, and only it, in a
    // critical extended key usage; the TLS certificate names none.
    for p in KeyPurpose::ALL {
        let text = openssl_text(&ca.join(format!("{p}.crt")));
        assert!(text.contains("Extended Key Usage: critical"), "{text}");
        for q in KeyPurpose::ALL {
            assert_eq!(text.contains(&q.oid_text()), p == q, "{p}: {text}");
        }
        assert!(!text.contains("TLS Web"), "{text}");
    }
    let tls_text = openssl_text(&ca.join("hub.crt"));
    assert!(
        tls_text.contains("TLS Web Server Authentication"),
        "{tls_text}"
    );
    assert!(!tls_text.contains("2.25."), "{tls_text}");
    let mut verify = Command::new("openssl");
    verify
        .args(["verify", "-purpose", "any", "-CAfile"])
        .arg(ca.join("ca.crt"))
        .arg(tmp.path().join("car-12/node.crt"))
        .arg(ca.join("hub.crt"));
    for p in KeyPurpose::ALL {
        verify.arg(ca.join(format!("{p}.crt")));
    }
    let verified = ok(&mut verify);
    assert_eq!(verified.matches(": OK").count(), 7, "{verified}");

    // openssl and Python `cryptography` read every private key we write.
    let mut keys = vec![
        tmp.path().join("car-12/node.key"),
        ca.join("hub.key"),
        ca.join("ca-private/ca.key"),
    ];
    keys.extend(KeyPurpose::ALL.iter().map(|p| ca.join(format!("{p}.key"))));
    for key in keys {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is readable by others", key.display());
        }
        ok(Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&key));
        let py = ok(Command::new("python3").arg("-c").arg(PY_LOAD).arg(&key));
        assert_eq!(py.trim(), "Ed25519PrivateKey", "{}", key.display());
    }

    // The CA key lives apart from what the hub reads.
    assert!(!ca.join("ca.key").exists(), "ca.key beside hub.key");

    // Keys are private files; enrolling twice into one folder is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("car-12/node.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "node.key is readable by others");
    }
    let again = run(hub()
        .args(["pki", "enroll", "--ca"])
        .arg(&ca)
        .args(["--device", "car-12", "--kind", "vehicle", "--out"])
        .arg(tmp.path().join("car-12")));
    assert!(!again.status.success());

    // A log signed by our node verifies against our CA…
    let ours = tmp.path().join("ours.bundle");
    bundle_for(&tmp.path().join("car-12"), &ca, "car-12", &ours);
    let out = ok(hub()
        .args(["verify", "--ca"])
        .arg(ca.join("ca.crt"))
        .arg(&ours));
    assert!(
        out.contains("car-12: AUTHENTIC — 3 entries, 3 reads"),
        "{out}"
    );

    // …and a node enrolled by another CA is refused by name.
    let other = tmp.path().join("other-ca");
    init(&other, "Elsewhere PD");
    enroll(&other, "car-12", &tmp.path().join("impostor"));
    let theirs = tmp.path().join("theirs.bundle");
    bundle_for(&tmp.path().join("impostor"), &other, "car-12", &theirs);
    let out = run(hub()
        .args(["verify", "--ca"])
        .arg(ca.join("ca.crt"))
        .arg(&theirs));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("NOT AUTHENTIC"), "{stdout}");
    assert!(
        stdout.contains("not issued by this deployment's CA"),
        "{stdout}"
    );
}

/// A bundle whose manifest the hub's TLS key signed — how bundles were
/// signed before the hub had a key per purpose, or a TLS key that leaked —
/// is refused by `hub verify`, and says why; so is one the log key signed.
#[test]
fn a_manifest_signed_with_the_tls_or_another_key_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    init(&ca, "Test PD");
    enroll(&ca, "car-12", &tmp.path().join("car-12"));
    for (key, why) in [
        ("hub", "server authentication"),
        ("log", "not for signing bundle and evidence manifests"),
    ] {
        let bundle = tmp.path().join(format!("{key}.bundle"));
        bundle_signed_by(&tmp.path().join("car-12"), &ca, key, "car-12", &bundle);
        let out = run(hub()
            .args(["verify", "--ca"])
            .arg(ca.join("ca.crt"))
            .arg(&bundle));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{key}: {stdout}");
        assert!(stdout.contains("NOT AUTHENTIC"), "{key}: {stdout}");
        assert!(stdout.contains(why), "{key}: {stdout}");
    }
}

/// `hub serve` refuses to start with a signing key whose certificate is
/// for another purpose (the TLS certificate above all), or one key for two
/// purposes, and names the file and the reason.
#[test]
fn the_hub_refuses_a_key_certified_for_another_purpose() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    init(&ca, "Test PD");
    let serve = |keys: &str| -> String {
        let config = tmp.path().join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\napi_listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\
                 ca_cert = {:?}\ncert = {:?}\nkey = {:?}\n{keys}",
                tmp.path().join("hub-data"),
                ca.join("ca.crt"),
                ca.join("hub.crt"),
                ca.join("hub.key"),
            ),
        )
        .expect("config");
        let out = run(hub().args(["serve", "--config"]).arg(&config));
        assert!(!out.status.success(), "the hub started with {keys}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let pair = |purpose: &str, file: &str| {
        format!(
            "[keys.{purpose}]\ncert = {:?}\nkey = {:?}\n",
            ca.join(format!("{file}.crt")),
            ca.join(format!("{file}.key"))
        )
    };
    let err = serve(&pair("policy", "hub"));
    assert!(err.contains("server authentication"), "{err}");
    assert!(err.contains("policy"), "{err}");
    let err = serve(&pair("export", "receipt"));
    assert!(
        err.contains("not for signing bundle and evidence manifests"),
        "{err}"
    );
    // A receipt certificate with the policy key: not its key.
    let err = serve(&format!(
        "[keys.receipt]\ncert = {:?}\nkey = {:?}\n",
        ca.join("receipt.crt"),
        ca.join("policy.key")
    ));
    assert!(err.contains("not the key of its certificate"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    init(&ca, "Test PD");
    let junk = tmp.path().join("junk.bundle");
    std::fs::write(&junk, b"ALPR-LOG-BUNDLE2\x02\xff\xff\xff\xff").expect("write");
    let out = run(hub()
        .args(["verify", "--ca"])
        .arg(ca.join("ca.crt"))
        .arg(&junk));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("over the limit"), "{err}");

    let out = run(hub()
        .args(["pki", "enroll", "--ca"])
        .arg(tmp.path().join("nowhere"))
        .args(["--device", "x", "--kind", "pole", "--out"])
        .arg(tmp.path().join("x")));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca.crt"));
    let out = run(hub()
        .args(["pki", "enroll", "--ca"])
        .arg(&ca)
        .args(["--device", "bad name", "--kind", "pole", "--out"])
        .arg(tmp.path().join("x")));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid device name"));
}

#[test]
fn days_out_of_range_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    for days in ["99999999", "-1", "0", "36501"] {
        let out = run(hub()
            .args(["pki", "init", &format!("--days={days}"), "--out"])
            .arg(tmp.path().join(format!("ca{days}"))));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "init --days {days} accepted");
        assert!(err.contains("--days"), "{days}: {err}");
        assert!(err.contains("1..=36500"), "{days}: {err}");
        assert!(!err.contains("panicked"), "{days}: {err}");
    }
    let ca = tmp.path().join("ca");
    init(&ca, "Test PD");
    for days in ["99999999", "-1", "0", "3651"] {
        let out = run(hub()
            .args(["pki", "enroll", "--ca"])
            .arg(&ca)
            .args(["--device", "n1", "--kind", "pole"])
            .arg(format!("--days={days}"))
            .arg("--out")
            .arg(tmp.path().join("n1")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "enroll --days {days} accepted");
        assert!(err.contains("1..=3650"), "{days}: {err}");
        assert!(!tmp.path().join("n1/node.crt").exists());
    }
    ok(hub()
        .args(["pki", "enroll", "--ca"])
        .arg(&ca)
        .args([
            "--device", "n1", "--kind", "pole", "--days", "3650", "--out",
        ])
        .arg(tmp.path().join("n1")));
}

#[test]
fn an_old_layout_with_ca_key_beside_ca_crt_still_enrolls() {
    // Setups made before the CA key moved kept ca.key beside ca.crt.
    let tmp = tempfile::tempdir().expect("tmp");
    let ca = tmp.path().join("ca");
    init(&ca, "Test PD");
    std::fs::rename(ca.join("ca-private/ca.key"), ca.join("ca.key")).expect("mv");
    ok(hub()
        .args(["pki", "enroll", "--ca"])
        .arg(&ca)
        .args(["--device", "n2", "--kind", "pole", "--out"])
        .arg(tmp.path().join("n2")));
    assert!(tmp.path().join("n2/node.crt").exists());
}

/// A browser can use the console's certificate: an ECDSA P-256 key for
/// the names asked, for server authentication, chained to the deployment
/// CA (openssl checks the chain); it is not silently replaced.
#[test]
fn the_console_certificate_is_ecdsa_and_chains_to_the_deployment_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    init(&ca, "Console County");
    let said = ok(hub().args(["pki", "console", "--ca"]).arg(&ca).args([
        "--name",
        "hub.console.test",
        "--name",
        "10.0.0.5",
    ]));
    assert!(said.contains("api_cert = "), "{said}");
    assert!(said.contains("SPKI"), "the key pin is printed: {said}");
    let cert = ca.join("console.crt");
    let text = openssl_text(&cert);
    for want in [
        "id-ecPublicKey",
        "P-256",
        "TLS Web Server Authentication",
        "DNS:hub.console.test",
        "IP Address:10.0.0.5",
        "Console County",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
    let verified = ok(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca.join("ca.crt"))
        .arg(&cert));
    assert!(verified.contains(": OK"), "{verified}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca.join("console.key"))
        .expect("console.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is private: {mode:o}");

    let before = std::fs::read_to_string(&cert).expect("console.crt");
    let again = run(hub().args(["pki", "console", "--ca"]).arg(&ca));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&cert).expect("console.crt"),
        before,
        "a refused run leaves the certificate as it was"
    );
}
