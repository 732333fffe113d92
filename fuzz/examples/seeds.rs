//! Writes the seed corpora under `fuzz/corpus/<target>/`: a few valid encodings of each input
//! kind, so the fuzzer starts from the formats the code really reads rather than from nothing.
//! Run from `fuzz/`: `cargo +nightly run --example seeds`.

use std::path::Path;

use bytes::Bytes;
use tinykv_node::cmd::{ChangePeer, CmdBody, RaftCmd, WriteOp};
use tinykv_node::config::NodeConfig;
use tinykv_node::message::RaftMessage;
use tinykv_proto::api::{
    self, AdminRequest, AdminResponse, KvError, KvOp, KvRequest, KvResponse, ReadMode, StoreAddr,
};
use tinykv_raft::{ConfChange, ConfChangeType, Entry, EntryType, HardState, Message, MessageType};
use tinykv_storage::keys;
use tinykv_storage::{
    DataFormat, IdAllocState, Peer, PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState,
    Record, Region, RegionEpoch, RegionLocalState, SnapshotDescriptor, SnapshotHeader,
    StoreAddress, StoreIdent, StoreStarted,
};
use tinykv_transport::frame;
use tinykv_transport::wire::{
    HelloReply, RemoteError, RpcReply, Service, SnapshotAck, SnapshotRefusal, StreamHead,
};

fn region() -> Region {
    Region {
        id: 1,
        start_key: b"a".to_vec(),
        end_key: b"m".to_vec(),
        epoch: RegionEpoch {
            conf_ver: 3,
            version: 1,
        },
        peers: (1..=3).map(|i| Peer::voter(i, i)).collect(),
    }
}

fn raft_message() -> RaftMessage {
    let mut message = Message::new(MessageType::Append, 1, 2);
    message.term = 4;
    message.log_term = 4;
    message.index = 9;
    message.commit = 9;
    message.entries = vec![Entry {
        entry_type: EntryType::Normal,
        term: 4,
        index: 10,
        data: raft_cmd().encode(),
    }];
    RaftMessage {
        region_id: 1,
        from_peer: Peer::voter(1, 1),
        to_peer: Peer::voter(2, 2),
        epoch: region().epoch,
        message,
        start_key: b"a".to_vec(),
        end_key: b"m".to_vec(),
        signal: Default::default(),
    }
}

fn raft_cmd() -> RaftCmd {
    RaftCmd {
        region_id: 1,
        epoch: region().epoch,
        body: CmdBody::Write(vec![
            WriteOp::Put {
                key: Bytes::from_static(b"k1"),
                value: Bytes::from_static(b"v1"),
            },
            WriteOp::Delete {
                key: Bytes::from_static(b"k2"),
            },
        ]),
    }
}

fn change_peer() -> ChangePeer {
    ChangePeer {
        peer_id: 4,
        store_id: 4,
        addr: "127.0.0.1:20164".into(),
    }
}

/// One target's seed directory; files are numbered in the order they are added.
struct Corpus {
    dir: std::path::PathBuf,
    count: usize,
}

impl Corpus {
    fn new(root: &Path, name: &str) -> std::io::Result<Corpus> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(Corpus { dir, count: 0 })
    }

    fn add(&mut self, label: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.count += 1;
        std::fs::write(self.dir.join(format!("{:02}-{label}", self.count)), bytes)
    }
}

/// `[selector][pattern length][pattern][frames]`, as the frame_decoder target reads its input.
fn frame_input<T: serde::Serialize>(selector: u8, pattern: &[u8], values: &[T]) -> Vec<u8> {
    let mut out = vec![selector, pattern.len() as u8];
    out.extend_from_slice(pattern);
    for v in values {
        out.extend(frame::encode(v, usize::MAX).expect("seed values encode"));
    }
    out
}

fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(bytes);
    out
}

/// A snapshot file without its trailer (the record_decoder target appends the checksum).
fn snapshot_file_body() -> Vec<u8> {
    let header = postcard::to_allocvec(&SnapshotHeader {
        region: region(),
        index: 12,
        term: 4,
        cluster: Default::default(),
    })
    .expect("header encodes");
    let mut out = b"TKVSNAP2".to_vec();
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    for (k, v) in [(&b"b"[..], &b"1"[..]), (b"c", b"22")] {
        out.push(1);
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.push(0);
    out.extend_from_slice(&2u64.to_be_bytes());
    out
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let mut c = Corpus::new(&root, "frame_decoder")?;
    c.add(
        "hello",
        &frame_input(0, &[], &[StreamHead::Hello { store_id: 3 }]),
    )?;
    c.add(
        "raft-head",
        &frame_input(0, &[2, 0, 3], &[StreamHead::Raft]),
    )?;
    c.add(
        "rpc-head",
        &frame_input(
            0x10,
            &[1],
            &[StreamHead::Rpc {
                service: Service::Client,
                body: api::encode(&KvRequest {
                    region_id: 1,
                    epoch: None,
                    op: KvOp::Get {
                        key: Bytes::from_static(b"k"),
                        read: ReadMode::Linearizable,
                    },
                }),
            }],
        ),
    )?;
    c.add(
        "snapshot-head",
        &frame_input(
            0x20,
            &[7],
            &[StreamHead::Snapshot(tinykv_transport::SnapshotHeader {
                region_id: 1,
                index: 12,
                term: 4,
                size: 4096,
                crc32: 0xdead_beef,
                context: api::encode(&raft_message()),
            })],
        ),
    )?;
    c.add(
        "raft-batches",
        &frame_input(
            0x11,
            &[5, 0],
            &[vec![raft_message()], vec![raft_message(), raft_message()]],
        ),
    )?;
    let replies: [RpcReply; 3] = [
        Ok(Bytes::from_static(b"answer")),
        Err(RemoteError::NoHandler),
        Err(RemoteError::Handler("no".into())),
    ];
    c.add("rpc-replies", &frame_input(0x12, &[], &replies))?;
    c.add(
        "snapshot-acks",
        &frame_input(
            0x13,
            &[],
            &[
                SnapshotAck::Accepted,
                SnapshotAck::Rejected(SnapshotRefusal::SizeMismatch {
                    expected: 10,
                    got: 9,
                }),
            ],
        ),
    )?;
    c.add(
        "hello-reply",
        &frame_input(0x14, &[], &[HelloReply::Accepted]),
    )?;
    c.add(
        "raw",
        &frame_input(0x25, &[], &[Bytes::from_static(b"raw payload")]),
    )?;

    let mut c = Corpus::new(&root, "config_parser")?;
    c.add("defaults.yaml", NodeConfig::default_yaml().as_bytes())?;
    c.add(
        "node.yaml",
        b"store-id: 2\n\
          listen-addr: 127.0.0.1:20162\n\
          advertise-addr: \"[::1]:20162\"\n\
          data-dir: /var/lib/tinykv/2\n\
          initial-cluster: [\"1=127.0.0.1:20161\", \"2=127.0.0.1:20162\", \"3=127.0.0.1:20163\"]\n\
          initial-cluster-token: prod-a\n\
          tls: {ca: ca.pem, cert: store-2.pem, key: store-2-key.pem}\n\
          raft:\n  base-tick-interval: 50ms\n  election-timeout-ticks: 20\n  max-size-per-msg: 512KiB\n\
          snapshot:\n  max-bytes-per-sec: 0\n  chunk-size: 1MiB\n\
          request-timeout: 2s\n",
    )?;
    c.add(
        "typo.yaml",
        b"store-id: 1\nraft:\n  election-timeout-tick: 10\n",
    )?;

    let mut c = Corpus::new(&root, "record_decoder")?;
    let hard_state = HardState {
        term: 4,
        vote: 1,
        commit: 9,
    };
    c.add(
        "raft-state",
        &with_selector(
            0,
            &RaftLocalState {
                hard_state,
                last_index: 10,
                last_term: 4,
            }
            .encode(),
        ),
    )?;
    c.add(
        "apply-state",
        &with_selector(
            1,
            &RaftApplyState {
                applied_index: 9,
                truncated_state: RaftTruncatedState { index: 5, term: 5 },
            }
            .encode(),
        ),
    )?;
    c.add(
        "region-state",
        &with_selector(
            2,
            &RegionLocalState {
                state: PeerState::Applying,
                region: region(),
            }
            .encode(),
        ),
    )?;
    c.add(
        "store-ident",
        &with_selector(
            3,
            &StoreIdent {
                cluster_id: 0x1234_5678_9abc,
                store_id: 2,
            }
            .encode(),
        ),
    )?;
    c.add(
        "store-address",
        &with_selector(
            4,
            &StoreAddress {
                store_id: 3,
                addr: "127.0.0.1:20163".into(),
            }
            .encode(),
        ),
    )?;
    c.add("region", &with_selector(5, &region().encode()))?;
    c.add(
        "entry",
        &with_selector(
            6,
            &Entry {
                entry_type: EntryType::ConfChange,
                term: 4,
                index: 11,
                data: ConfChange {
                    change_type: ConfChangeType::AddNode,
                    node_id: 4,
                    context: change_peer().encode(),
                }
                .encode(),
            }
            .encode(),
        ),
    )?;
    c.add("key-log", &with_selector(7, &keys::raft_log_key(1, 10)))?;
    c.add("key-apply", &with_selector(7, &keys::apply_state_key(1)))?;
    c.add(
        "key-store-addr",
        &with_selector(7, &keys::store_addr_key(3)),
    )?;
    c.add("key-data", &with_selector(7, &keys::data_key(b"user")))?;
    c.add(
        "descriptor",
        &with_selector(
            8,
            &SnapshotDescriptor {
                region: region(),
                index: 12,
                term: 4,
                file_name: "gen_1_4_12.snap".into(),
                size: 4096,
                checksum: 0xdead_beef,
            }
            .encode(),
        ),
    )?;
    c.add(
        "store-started",
        &with_selector(9, &StoreStarted { store_id: 3 }.encode()),
    )?;
    c.add(
        "id-alloc",
        &with_selector(10, &IdAllocState { next_id: 42 }.encode()),
    )?;
    c.add(
        "data-format",
        &with_selector(11, &DataFormat { version: 2 }.encode()),
    )?;
    // 0x81 % 13 is the snapshot file's selector, with the high bit asking for a fixed trailer.
    c.add("snapshot-file", &with_selector(0x81, &snapshot_file_body()))?;

    let mut c = Corpus::new(&root, "service_decoder")?;
    let kv = |op| KvRequest {
        region_id: 1,
        epoch: Some(region().epoch),
        op,
    };
    c.add(
        "kv-put",
        &with_selector(
            0,
            &api::encode(&kv(KvOp::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
            })),
        ),
    )?;
    c.add(
        "kv-scan",
        &with_selector(
            0,
            &api::encode(&kv(KvOp::Scan {
                start: Bytes::from_static(b"a"),
                end: Bytes::new(),
                limit: 100,
                read: ReadMode::Stale,
            })),
        ),
    )?;
    c.add(
        "admin-add-peer",
        &with_selector(
            1,
            &api::encode(&AdminRequest::AddLearner {
                region_id: 1,
                store_id: 4,
                peer_id: 17,
                addr: "127.0.0.1:20164".into(),
            }),
        ),
    )?;
    c.add(
        "admin-split-region",
        &with_selector(
            1,
            &api::encode(&AdminRequest::SplitRegion {
                region_id: 1,
                epoch: region().epoch,
                split_keys: vec![Bytes::from_static(b"g")],
                new_regions: vec![api::NewRegionIds {
                    region_id: 20,
                    peer_ids: vec![21, 22, 23],
                }],
            }),
        ),
    )?;
    c.add(
        "admin-raft-log",
        &with_selector(
            1,
            &api::encode(&AdminRequest::RaftLog {
                region_id: 1,
                from: 5,
                to: 10,
            }),
        ),
    )?;
    c.add(
        "raft-message",
        &with_selector(2, &api::encode(&raft_message())),
    )?;
    let answers: [api::KvResult; 3] = [
        Ok(KvResponse::Pairs {
            pairs: vec![(Bytes::from_static(b"a"), Bytes::from_static(b"1"))],
            more: true,
        }),
        Err(KvError::NotLeader {
            region_id: 1,
            leader: Some(StoreAddr {
                store_id: 2,
                addr: "127.0.0.1:20162".into(),
            }),
        }),
        Err(KvError::EpochNotMatch {
            regions: vec![region()],
        }),
    ];
    for (i, a) in answers.iter().enumerate() {
        c.add(
            &format!("kv-answer-{i}"),
            &with_selector(3, &api::encode(a)),
        )?;
    }
    let admin: api::AdminResult = Ok(AdminResponse::Checksum {
        applied: 12,
        crc32: 7,
        keys: 3,
    });
    c.add("admin-answer", &with_selector(4, &api::encode(&admin)))?;
    c.add("raft-cmd", &with_selector(5, &raft_cmd().encode()))?;
    let split = RaftCmd {
        body: CmdBody::Split {
            split_keys: vec![Bytes::from_static(b"g"), Bytes::from_static(b"p")],
            new_regions: vec![
                api::NewRegionIds {
                    region_id: 20,
                    peer_ids: vec![21, 22, 23],
                },
                api::NewRegionIds {
                    region_id: 24,
                    peer_ids: vec![25, 26, 27],
                },
            ],
        },
        ..raft_cmd()
    };
    c.add("raft-cmd-split", &with_selector(5, &split.encode()))?;
    c.add("change-peer", &with_selector(6, &change_peer().encode()))?;
    c.add(
        "conf-change",
        &with_selector(
            7,
            &ConfChange {
                change_type: ConfChangeType::RemoveNode,
                node_id: 3,
                context: change_peer().encode(),
            }
            .encode(),
        ),
    )?;
    println!("seeds written under {}", root.display());
    Ok(())
}
