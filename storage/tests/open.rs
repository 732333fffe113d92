mod common;

use common::{CLUSTER, Node, region};
use fjall::{Database, KeyspaceCreateOptions};
use tinykv_storage::{
    DATA_FORMAT_VERSION, DataFormat, Engines, IdAllocState, OpenOptions, Peer, Record,
    StorageError, keys,
};

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

/// A region as the first data format wrote it: peers without roles.
#[derive(serde::Serialize)]
struct RegionV1 {
    id: u64,
    start_key: Vec<u8>,
    end_key: Vec<u8>,
    epoch: (u64, u64),
    peers: Vec<(u64, u64)>,
}

#[derive(serde::Serialize)]
struct RegionStateV1 {
    state: u32,
    region: RegionV1,
}

/// A data dir of the first format (no format record, peers without roles) opens: its region
/// states are rewritten with every peer a voter and the format recorded, once.
#[test]
fn a_first_format_data_dir_is_upgraded_when_opened() {
    let dir = bootstrapped();
    let v1 = RegionStateV1 {
        state: 0,
        region: RegionV1 {
            id: 1,
            start_key: Vec::new(),
            end_key: Vec::new(),
            epoch: (4, 1),
            peers: vec![(1, 1), (2000002, 2)],
        },
    };
    let bytes = postcard::to_allocvec(&v1).unwrap();
    poke(dir.path(), "meta", &keys::region_state_key(1), Some(&bytes));
    poke(dir.path(), "meta", &keys::DATA_FORMAT_KEY, None);
    poke(dir.path(), "meta", &keys::ID_ALLOC_KEY, None);

    let engines = open(dir.path(), Some(CLUSTER)).unwrap();
    let state = engines.region_state(1).unwrap().unwrap();
    assert_eq!(
        state.region.peers,
        vec![Peer::voter(1, 1), Peer::voter(2000002, 2)]
    );
    assert_eq!(state.region.epoch.conf_ver, 4);
    // A cluster of the first format has no allocator yet: region 1 starts one when it first
    // allocates, above every id the earlier scheme gave.
    assert_eq!(engines.id_alloc().unwrap(), None);
    drop(engines);
    let db = Database::builder(dir.path().join("db")).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    let format = meta.get(keys::DATA_FORMAT_KEY).unwrap().expect("format");
    assert_eq!(
        DataFormat::decode("meta", &keys::DATA_FORMAT_KEY, &format).unwrap(),
        DataFormat {
            version: DATA_FORMAT_VERSION
        }
    );
    drop(meta);
    drop(db);
    // Opened again, it is this build's format and reads the same.
    let engines = open(dir.path(), Some(CLUSTER)).unwrap();
    assert_eq!(engines.region_state(1).unwrap().unwrap(), state);
}

/// A data dir of the second format opens as it is (region states with roles already) and is
/// recorded as this build's: a build of format 2 would refuse a placement record it does not
/// know, so it must refuse the dir by its format, naming it, rather than call it corrupt.
#[test]
fn a_second_format_data_dir_opens_and_is_recorded_as_this_format() {
    let dir = bootstrapped();
    let before = open(dir.path(), Some(CLUSTER))
        .unwrap()
        .region_state(1)
        .unwrap();
    let v2 = DataFormat { version: 2 }.encode();
    poke(dir.path(), "meta", &keys::DATA_FORMAT_KEY, Some(&v2));
    let engines = open(dir.path(), Some(CLUSTER)).unwrap();
    assert_eq!(engines.region_state(1).unwrap(), before);
    assert_eq!(engines.placement_record().unwrap(), None);
    drop(engines);
    let db = Database::builder(dir.path().join("db")).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    let format = meta.get(keys::DATA_FORMAT_KEY).unwrap().expect("format");
    assert_eq!(
        DataFormat::decode("meta", &keys::DATA_FORMAT_KEY, &format).unwrap(),
        DataFormat { version: 3 }
    );
}

/// A data dir written by a newer build is refused before anything is decoded or written, with
/// the version it holds and the versions this build reads.
#[test]
fn a_newer_data_format_is_refused_naming_the_versions() {
    let dir = bootstrapped();
    let newer = DataFormat {
        version: DATA_FORMAT_VERSION + 1,
    };
    poke(
        dir.path(),
        "meta",
        &keys::DATA_FORMAT_KEY,
        Some(&newer.encode()),
    );
    let before = listing(dir.path());
    let err = open(dir.path(), Some(CLUSTER)).unwrap_err();
    assert!(matches!(err, StorageError::NewerDataFormat { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("data format {}", DATA_FORMAT_VERSION + 1))
            && text.contains(&format!("formats 1 to {DATA_FORMAT_VERSION}")),
        "{text}"
    );
    assert_eq!(listing(dir.path()), before);
}

/// The first region starts the cluster's id allocator above every id it uses.
#[test]
fn the_first_region_starts_the_id_allocator_above_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = region(1, b"", b"");
    r.peers = vec![Peer::voter(1, 1), Peer::voter(2, 2), Peer::voter(7, 7)];
    let node = Node::bootstrap(dir.path(), 1, &r);
    assert_eq!(
        node.engines.id_alloc().unwrap(),
        Some(IdAllocState { next_id: 8 })
    );
    // Other regions keep no allocator.
    let other = tempfile::tempdir().unwrap();
    let node = Node::bootstrap(other.path(), 1, &region(5, b"", b""));
    assert_eq!(node.engines.id_alloc().unwrap(), None);
}
