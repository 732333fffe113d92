//! Certificate files: writing, permissions, loading back, and errors that name the file.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use tinykv_transport::certs::{CaFiles, load_certs, load_key};
use tinykv_transport::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_files_load_back_and_work_for_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate("files CA", Validity::days(30)).unwrap();
    let files = ca.write(dir.path()).unwrap();
    assert_eq!(files, CaFiles::in_dir(dir.path()));
    assert_eq!(
        std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A CA loaded from disk issues certificates that chain to the original CA file.
    let loaded = ClusterCa::load(&files.cert, &files.key).unwrap();
    let node = loaded
        .issue_node(1, &["127.0.0.1".into()], Validity::days(1))
        .unwrap();
    node.write(&dir.path().join("n1.pem"), &dir.path().join("n1-key.pem"))
        .unwrap();
    let client = loaded
        .issue_client("ops", Role::Admin, Validity::days(1))
        .unwrap();
    client
        .write(&dir.path().join("c.pem"), &dir.path().join("c-key.pem"))
        .unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("c-key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let node_tls = TlsIdentity::load(&TlsFiles {
        ca: files.cert.clone(),
        cert: dir.path().join("n1.pem"),
        key: dir.path().join("n1-key.pem"),
    })
    .unwrap();
    let client_tls = TlsIdentity::load(&TlsFiles {
        ca: files.cert.clone(),
        cert: dir.path().join("c.pem"),
        key: dir.path().join("c-key.pem"),
    })
    .unwrap();
    assert_eq!(
        Identity::from_leaf(&node_tls.chain[0]).unwrap(),
        Identity::Store(1)
    );
    assert_eq!(
        Identity::from_leaf(&client_tls.chain[0]).unwrap(),
        Identity::Client {
            name: "ops".into(),
            role: Role::Admin
        }
    );

    let snap = tempfile::tempdir().unwrap();
    let (endpoint, _events) =
        Endpoint::<Msg>::bind(config(1, "127.0.0.1:0".parse().unwrap(), &snap), node_tls).unwrap();
    endpoint.set_rpc_handler(echo_handler());
    let rpc = RpcClient::new(
        &client_tls,
        endpoint.local_addr().unwrap(),
        RpcClientOptions::default(),
    )
    .unwrap();
    assert_eq!(
        within(rpc.call(Service::Client, "x".into())).await.unwrap(),
        "client \"ops\" (admin)|Client|x"
    );
}

#[test]
fn load_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = load_certs(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = load_certs(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty.pem") && err.contains("no CERTIFICATE"),
        "{err}"
    );

    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = load_certs(&junk).unwrap_err().to_string();
    assert!(err.contains("junk.pem") && err.contains("X.509"), "{err}");

    let err = load_key(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty.pem") && err.contains("PRIVATE KEY"),
        "{err}"
    );

    // A key that does not belong to the CA certificate.
    let ca = ClusterCa::generate("a", Validity::days(1)).unwrap();
    let files = ca.write(dir.path()).unwrap();
    let other = dir.path().join("other-key.pem");
    std::fs::write(
        &other,
        ClusterCa::generate("b", Validity::days(1))
            .unwrap()
            .cert()
            .key_pem(),
    )
    .unwrap();
    let err = ClusterCa::load(&files.cert, &other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other-key.pem") && err.contains("does not match"),
        "{err}"
    );

    // A leaf is not a CA.
    let leaf = ca
        .issue_client("x", Role::ReadOnly, Validity::days(1))
        .unwrap();
    leaf.write(
        &dir.path().join("leaf.pem"),
        &dir.path().join("leaf-key.pem"),
    )
    .unwrap();
    let err = ClusterCa::load(
        &dir.path().join("leaf.pem"),
        &dir.path().join("leaf-key.pem"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("leaf.pem") && err.contains("not a CA"),
        "{err}"
    );
}

#[test]
fn node_certificate_names_and_validation() {
    let ca = ClusterCa::generate("c", Validity::days(1)).unwrap();
    let cert = ca
        .issue_node(
            42,
            &["db1.example".into(), "10.1.2.3".into()],
            Validity::days(1),
        )
        .unwrap();
    assert_eq!(
        Identity::from_leaf(cert.cert_der()).unwrap(),
        Identity::Store(42)
    );
    assert!(matches!(
        ca.issue_node(1, &["bad name!".into()], Validity::days(1)),
        Err(CertError::InvalidSan { .. })
    ));
    let now = time::OffsetDateTime::now_utc();
    assert!(matches!(
        ca.issue_client("x", Role::ReadWrite, Validity::between(now, now)),
        Err(CertError::InvalidValidity { .. })
    ));
    assert_eq!(certs::parse_store_dns_name("store-7.tinykv"), Some(7));
    for bad in [
        "store-07.tinykv",
        "store-.tinykv",
        "store-+7.tinykv",
        "store-7.tinykv.evil",
        "xstore-7.tinykv",
    ] {
        assert_eq!(certs::parse_store_dns_name(bad), None, "{bad}");
    }
}
