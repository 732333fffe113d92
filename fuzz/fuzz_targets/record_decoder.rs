//! Storage's decoders of what it reads back from disk: every record kind stored under a key
//! (strict postcard, errors naming the key), every key parser, the snapshot descriptor carried in
//! Raft snapshot messages, and the snapshot file reader. A decoded value must encode to bytes
//! that decode to the same value (the encoding is not required to be the input: postcard accepts
//! varints with redundant continuation bytes, which tinykv never writes).
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tinykv_raft::Entry;
use tinykv_storage::keys::{self, MetaKey};
use tinykv_storage::{
    DataFormat, IdAllocState, RaftApplyState, RaftLocalState, Record, Region, RegionLocalState,
    SnapshotDescriptor, StoreAddress, StoreIdent, StoreStarted, inspect_snapshot_file,
};

const KEY: &[u8] = b"\x01\x02fuzz";

fn check_record<T: Record + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    match T::decode("meta", KEY, bytes) {
        Ok(value) => {
            let again = T::decode("meta", KEY, &value.encode()).expect("an encoded record decodes");
            assert_eq!(again, value);
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&keys::hex(KEY)),
                "error does not name the key: {text}"
            );
        }
    }
}

fn check_keys(key: &[u8]) {
    if let Some(kind) = keys::decode_meta_key(key) {
        let rebuilt = match kind {
            MetaKey::StoreIdent => keys::STORE_IDENT_KEY.to_vec(),
            MetaKey::ApplyState(r) => keys::apply_state_key(r).to_vec(),
            MetaKey::RegionState(r) => keys::region_state_key(r).to_vec(),
            MetaKey::StoreAddr(s) => keys::store_addr_key(s).to_vec(),
            MetaKey::StoreStarted(s) => keys::store_started_key(s).to_vec(),
            MetaKey::IdAlloc => keys::ID_ALLOC_KEY.to_vec(),
            MetaKey::DataFormat => keys::DATA_FORMAT_KEY.to_vec(),
        };
        assert_eq!(rebuilt, key, "{kind:?}");
    }
    if key.len() >= 10 {
        let region = u64::from_be_bytes(key[2..10].try_into().expect("8 bytes"));
        if let Some(index) = keys::decode_raft_log_key(region, key) {
            assert_eq!(keys::raft_log_key(region, index).as_slice(), key);
        }
    }
    if let Some(user) = keys::user_key(key) {
        assert_eq!(keys::data_key(user), key);
    }
}

/// A file for the snapshot reader, in the fuzzer's temp dir (tmpfs when there is one).
fn snapshot_path() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("tinykv-fuzz-{}.snap", std::process::id()))
    })
}

/// The file reader behind a received snapshot. The trailer checksum is fixed up when the first
/// byte says so; without that the fuzzer would almost never get past the checksum to the header.
fn check_snapshot_file(fix_trailer: bool, body: &[u8]) {
    let path = snapshot_path();
    let mut file = std::fs::File::create(path).expect("the fuzzer's temp dir is writable");
    file.write_all(body).expect("write to the temp file");
    if fix_trailer {
        file.write_all(&crc32fast::hash(body).to_be_bytes())
            .expect("write to the temp file");
    }
    drop(file);
    if let Ok(snap) = inspect_snapshot_file(path) {
        assert_eq!(
            snap.size,
            body.len() as u64 + if fix_trailer { 4 } else { 0 }
        );
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    match selector % 13 {
        0 => check_record::<RaftLocalState>(bytes),
        1 => check_record::<RaftApplyState>(bytes),
        2 => check_record::<RegionLocalState>(bytes),
        3 => check_record::<StoreIdent>(bytes),
        4 => check_record::<StoreAddress>(bytes),
        5 => check_record::<Region>(bytes),
        6 => check_record::<Entry>(bytes),
        7 => check_keys(bytes),
        8 => {
            if let Ok(desc) = SnapshotDescriptor::decode(bytes) {
                let again = SnapshotDescriptor::decode(&desc.encode()).expect("encoded descriptor");
                assert_eq!(again, desc);
            }
        }
        9 => check_record::<StoreStarted>(bytes),
        10 => check_record::<IdAllocState>(bytes),
        11 => check_record::<DataFormat>(bytes),
        _ => check_snapshot_file(selector & 0x80 != 0, bytes),
    }
});
