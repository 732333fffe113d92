//! Measuring a region for split: sizes, key counts and where the cuts fall.

mod common;

use common::{Node, region};
use tinykv_storage::{Region, RegionSize, SplitLimits};

/// 100 keys `k000`..`k099` of 4 + 96 bytes each (10,000 bytes) in [b, y), and one key outside.
fn filled(dir: &std::path::Path) -> (Node, Region) {
    let r = region(1, b"b", b"y");
    let node = Node::bootstrap(dir, 1, &r);
    let mut ab = node.engines.apply_batch();
    for i in 0..100u32 {
        ab.put(&r, format!("k{i:03}").as_bytes(), &[7; 96]).unwrap();
    }
    let everything = region(2, b"", b"");
    ab.put(&everything, b"z-outside", &[0; 5000]).unwrap();
    node.engines.commit_apply(ab).unwrap();
    (node, r)
}

fn limits(split_size: u64, max_size: u64, split_keys: u64, max_keys: u64) -> SplitLimits {
    SplitLimits {
        split_size,
        max_size,
        split_keys,
        max_keys,
        max_split_keys: 10,
    }
}

#[test]
fn a_region_under_its_limits_is_measured_and_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (node, r) = filled(dir.path());
    let got = node
        .engines
        .check_split(&r, &limits(5_000, 10_000, 1_000, 1_000))
        .unwrap();
    assert_eq!(
        got,
        RegionSize {
            size: 10_000,
            keys: 100,
            split_keys: Vec::new()
        },
        "exactly max-size is not over it, and keys outside the range do not count"
    );
}

#[test]
fn an_oversized_region_is_cut_at_the_split_size_points() {
    let dir = tempfile::tempdir().unwrap();
    let (node, r) = filled(dir.path());
    // Pieces of at most 2,500 bytes: 25 keys each.
    let got = node
        .engines
        .check_split(&r, &limits(2_500, 5_000, 1_000, 1_000))
        .unwrap();
    assert_eq!((got.size, got.keys), (10_000, 100));
    assert_eq!(
        got.split_keys,
        vec![b"k025".to_vec(), b"k050".to_vec(), b"k075".to_vec()]
    );
    // By key count: pieces of 40 keys, the region over 90.
    let got = node
        .engines
        .check_split(&r, &limits(1 << 30, 1 << 30, 40, 90))
        .unwrap();
    assert_eq!(got.split_keys, vec![b"k040".to_vec(), b"k080".to_vec()]);
    // At most `max_split_keys` cuts at a time.
    let mut few = limits(100, 1_000, 1_000, 1_000);
    few.max_split_keys = 2;
    let got = node.engines.check_split(&r, &few).unwrap();
    assert_eq!(got.split_keys, vec![b"k001".to_vec(), b"k002".to_vec()]);
}

#[test]
fn a_single_huge_value_is_never_cut_at_the_start_key() {
    let dir = tempfile::tempdir().unwrap();
    let r = region(1, b"", b"");
    let node = Node::bootstrap(dir.path(), 1, &r);
    let mut ab = node.engines.apply_batch();
    ab.put(&r, b"", &[1; 10_000]).unwrap();
    ab.put(&r, b"a", &[1; 10]).unwrap();
    node.engines.commit_apply(ab).unwrap();
    let got = node
        .engines
        .check_split(&r, &limits(100, 200, 1_000, 1_000))
        .unwrap();
    assert_eq!(got.split_keys, vec![b"a".to_vec()]);
}
