mod common;

use common::{CLUSTER, Node, region};
use fjall::{Database, KeyspaceCreateOptions};
use tinykv_storage::{Engines, OpenOptions, StorageError, keys};

fn open(dir: &std::path::Path, cluster: Option<u64>) -> Result<Engines, StorageError> {
    Engines::open(
        dir,
        OpenOptions {
            expected_cluster_id: cluster,
        },
    )
    .map(|(e, _)| e)
}

/// Writes raw bytes under a key of a keyspace, behind tinykv's back.
fn poke(dir: &std::path::Path, keyspace: &str, key: &[u8], value: Option<&[u8]>) {
    let db = Database::builder(dir.join("db")).open().unwrap();
    let ks = db
        .keyspace(keyspace, KeyspaceCreateOptions::default)
        .unwrap();
    match value {
        Some(v) => ks.insert(key, v).unwrap(),
        None => ks.remove(key).unwrap(),
    }
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

fn bootstrapped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Node::bootstrap(dir.path(), 1, &region(1, b"", b""));
    dir
}

#[test]
fn a_corrupt_meta_record_is_refused_naming_its_key() {
    let dir = bootstrapped();
    let key = keys::region_state_key(1);
    poke(dir.path(), "meta", &key, Some(b"\xff\xfe garbage"));
    let err = open(dir.path(), Some(CLUSTER)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StorageError::CorruptRecord { .. }), "{err}");
    assert!(text.contains(&keys::hex(&key)), "{text}");
    // Refusing wrote nothing: the garbage is still there, and still refused.
    assert!(open(dir.path(), None).is_err());
}

#[test]
fn a_corrupt_raft_state_or_unknown_meta_key_is_refused() {
    let dir = bootstrapped();
    poke(dir.path(), "raft", &keys::raft_state_key(1), Some(b"\x01"));
    let err = open(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains(&keys::hex(&keys::raft_state_key(1))), "{err}");

    let dir = bootstrapped();
    poke(dir.path(), "meta", b"\x01\x09zzz", Some(b"x"));
    let err = open(dir.path(), None).unwrap_err().to_string();
    assert!(
        err.contains("0109") && err.contains("unknown meta key"),
        "{err}"
    );
}

/// Every file under `dir` with its size and modification time.
fn listing(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(listing(&entry.path()));
        } else {
            out.push((entry.path(), meta.len(), meta.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn another_clusters_data_dir_is_refused() {
    let dir = bootstrapped();
    // A dir opened once (which writes the ident file if an older version made it) and closed.
    drop(open(dir.path(), Some(CLUSTER)).unwrap());
    let before = listing(dir.path());
    match open(dir.path(), Some(CLUSTER + 1)) {
        Err(StorageError::ClusterIdMismatch { expected, found }) => {
            assert_eq!((expected, found), (CLUSTER + 1, CLUSTER));
        }
        other => panic!("expected a cluster id mismatch, got {other:?}"),
    }
    // Refused before the database was opened: not a byte of journal or manifest rewritten.
    assert_eq!(listing(dir.path()), before);
    assert!(open(dir.path(), Some(CLUSTER)).is_ok());
}

#[test]
fn regions_without_a_store_ident_are_refused() {
    let dir = bootstrapped();
    poke(dir.path(), "meta", &keys::STORE_IDENT_KEY, None);
    assert!(matches!(
        open(dir.path(), None),
        Err(StorageError::MissingStoreIdent { regions: 1 })
    ));
}

#[test]
fn a_foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    std::fs::write(dir.path().join("db/notes.txt"), b"mine").unwrap();
    assert!(matches!(
        open(dir.path(), None),
        Err(StorageError::ForeignDataDir { .. })
    ));
    let names: Vec<_> = std::fs::read_dir(dir.path().join("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);

    // A fjall database with other keyspaces is someone else's too.
    let dir = tempfile::tempdir().unwrap();
    poke(dir.path(), "users", b"k", Some(b"v"));
    let err = open(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("users"), "{err}");
}

#[test]
fn bootstrap_is_idempotent_but_never_rebinds() {
    let dir = bootstrapped();
    let engines = open(dir.path(), Some(CLUSTER)).unwrap();
    let ident = engines.store_ident().unwrap().unwrap();
    engines.bootstrap_store(ident).unwrap();
    assert!(matches!(
        engines.bootstrap_store(tinykv_storage::StoreIdent {
            cluster_id: CLUSTER,
            store_id: 9
        }),
        Err(StorageError::AlreadyBootstrapped { .. })
    ));
    assert!(matches!(
        engines.bootstrap_region(&region(1, b"", b"")),
        Err(StorageError::RegionExists(1))
    ));
    assert_eq!(engines.regions().unwrap().len(), 1);
}

#[test]
fn store_addresses_persist_and_are_validated() {
    use tinykv_storage::{OpenOptions, StoreAddress};
    let dir = tempfile::tempdir().unwrap();
    {
        let (engines, _) =
            tinykv_storage::Engines::open(dir.path(), OpenOptions::default()).unwrap();
        let addrs = vec![
            StoreAddress {
                store_id: 2,
                addr: "127.0.0.1:2".into(),
            },
            StoreAddress {
                store_id: 1,
                addr: "127.0.0.1:1".into(),
            },
        ];
        engines.put_store_addrs(&addrs).unwrap();
        let mut batch = engines.apply_batch();
        batch.set_store_addr(&StoreAddress {
            store_id: 3,
            addr: "127.0.0.1:3".into(),
        });
        engines.commit_apply(batch).unwrap();
        engines.sync().unwrap();
    }
    let (engines, _) = tinykv_storage::Engines::open(dir.path(), OpenOptions::default()).unwrap();
    let ids: Vec<u64> = engines
        .store_addrs()
        .unwrap()
        .iter()
        .map(|a| a.store_id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
}
