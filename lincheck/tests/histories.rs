//! The checker on hand-written histories that must pass and known-bad ones that must fail, and
//! on generated histories of a real sequential register.

use proptest::prelude::*;
use tinykv_lincheck::{OpKind, Operation, check_kv};

fn put(client: u64, call: u64, ret: Option<u64>, key: &str, value: &str) -> Operation {
    let kind = OpKind::Put {
        key: key.into(),
        value: value.into(),
    };
    Operation {
        client,
        call,
        ret,
        kind,
    }
}

fn del(client: u64, call: u64, ret: Option<u64>, key: &str) -> Operation {
    Operation {
        client,
        call,
        ret,
        kind: OpKind::Delete { key: key.into() },
    }
}

fn get(client: u64, call: u64, ret: u64, key: &str, found: Option<&str>) -> Operation {
    let kind = OpKind::Get {
        key: key.into(),
        found: found.map(Into::into),
    };
    Operation {
        client,
        call,
        ret: Some(ret),
        kind,
    }
}

fn cas(
    client: u64,
    call: u64,
    ret: Option<u64>,
    key: &str,
    expected: Option<&str>,
    value: &str,
    observed: Option<(bool, Option<&str>)>,
) -> Operation {
    let kind = OpKind::Cas {
        key: key.into(),
        expected: expected.map(Into::into),
        value: value.into(),
        observed: observed.map(|(s, p)| (s, p.map(Into::into))),
    };
    Operation {
        client,
        call,
        ret,
        kind,
    }
}

#[test]
fn compare_and_swap_answers_must_match_the_register() {
    // Sequential: put a, swap a→b, a failed swap reports b, a swap from absent fails.
    let h = [
        put(1, 0, Some(1), "k", "a"),
        cas(1, 2, Some(3), "k", Some("a"), "b", Some((true, Some("a")))),
        cas(1, 4, Some(5), "k", Some("a"), "c", Some((false, Some("b")))),
        cas(1, 6, Some(7), "k", None, "d", Some((false, Some("b")))),
        get(1, 8, 9, "k", Some("b")),
    ];
    assert!(check_kv(&h).is_ok());
    // Two concurrent swaps from the same value cannot both win.
    let both = [
        put(1, 0, Some(1), "k", "a"),
        cas(1, 2, Some(5), "k", Some("a"), "b", Some((true, Some("a")))),
        cas(2, 3, Some(6), "k", Some("a"), "c", Some((true, Some("a")))),
    ];
    assert!(check_kv(&both).is_err());
    // A swap that says it failed must have seen something else.
    let lying = [
        put(1, 0, Some(1), "k", "a"),
        cas(1, 2, Some(3), "k", Some("a"), "b", Some((false, Some("a")))),
    ];
    assert!(check_kv(&lying).is_err());
    // A lost write: the swap was answered, then a read misses it.
    let lost = [
        put(1, 0, Some(1), "k", "a"),
        cas(1, 2, Some(3), "k", Some("a"), "b", Some((true, Some("a")))),
        get(1, 4, 5, "k", Some("a")),
    ];
    assert!(check_kv(&lost).is_err());
    // An unknown swap may have happened or not.
    for seen in ["a", "b"] {
        let unknown = [
            put(1, 0, Some(1), "k", "a"),
            cas(1, 2, None, "k", Some("a"), "b", None),
            get(2, 4, 5, "k", Some(seen)),
        ];
        assert!(check_kv(&unknown).is_ok(), "{seen}");
    }
}

#[test]
fn empty_and_sequential_histories_pass() {
    assert!(check_kv(&[]).is_ok());
    let h = [
        get(1, 0, 1, "k", None),
        put(1, 2, Some(3), "k", "a"),
        get(1, 4, 5, "k", Some("a")),
        del(1, 6, Some(7), "k"),
        get(1, 8, 9, "k", None),
    ];
    assert!(check_kv(&h).is_ok());
}

#[test]
fn concurrent_reads_may_see_either_side_of_a_write() {
    let h = [
        put(1, 0, Some(1), "k", "a"),
        put(2, 2, Some(10), "k", "b"),
        get(3, 3, 4, "k", Some("b")),
        get(4, 5, 6, "k", Some("b")),
        get(5, 3, 9, "k", Some("a")),
    ];
    assert!(check_kv(&h).is_ok());
}

#[test]
fn stale_read_fails() {
    // "b" was written and acknowledged before the read began, yet the read saw "a".
    let h = [
        put(1, 0, Some(1), "k", "a"),
        put(1, 2, Some(3), "k", "b"),
        get(2, 4, 5, "k", Some("a")),
    ];
    let v = check_kv(&h).unwrap_err();
    assert_eq!(v.key, b"k");
    assert_eq!(v.operations.len(), 3);
    assert!(v.to_string().contains("no linearization"));
}

#[test]
fn lost_write_fails() {
    let h = [put(1, 0, Some(1), "k", "a"), get(2, 2, 3, "k", None)];
    assert!(check_kv(&h).is_err());
}

#[test]
fn resurrected_delete_fails() {
    let h = [
        put(1, 0, Some(1), "k", "a"),
        del(1, 2, Some(3), "k"),
        get(2, 4, 5, "k", None),
        get(2, 6, 7, "k", Some("a")),
    ];
    assert!(check_kv(&h).is_err());
}

#[test]
fn reads_going_back_in_time_fail() {
    // Two sequential reads by one client observe b then a while a preceded b.
    let h = [
        put(1, 0, Some(1), "k", "a"),
        put(2, 2, Some(20), "k", "b"),
        get(3, 3, 4, "k", Some("b")),
        get(3, 5, 6, "k", Some("a")),
    ];
    assert!(check_kv(&h).is_err());
}

#[test]
fn a_write_of_unknown_outcome_may_or_may_not_happen() {
    let seen = [put(1, 0, None, "k", "a"), get(2, 5, 6, "k", Some("a"))];
    assert!(check_kv(&seen).is_ok());
    let unseen = [put(1, 0, None, "k", "a"), get(2, 5, 6, "k", None)];
    assert!(check_kv(&unseen).is_ok());
    // But once seen it cannot vanish again.
    let flicker = [
        put(1, 0, None, "k", "a"),
        get(2, 5, 6, "k", Some("a")),
        get(2, 7, 8, "k", None),
    ];
    assert!(check_kv(&flicker).is_err());
    // And it cannot take effect before it was invoked.
    let early = [get(2, 0, 1, "k", Some("a")), put(1, 2, None, "k", "a")];
    assert!(check_kv(&early).is_err());
}

#[test]
fn keys_are_independent() {
    let h = [
        put(1, 0, Some(1), "x", "1"),
        put(1, 2, Some(3), "y", "2"),
        get(2, 4, 5, "x", Some("1")),
        get(2, 6, 7, "y", Some("2")),
        get(2, 8, 9, "z", None),
    ];
    assert!(check_kv(&h).is_ok());
    let bad = [put(1, 0, Some(1), "x", "1"), get(2, 4, 5, "y", Some("1"))];
    assert_eq!(check_kv(&bad).unwrap_err().key, b"y");
}

/// A history produced by a real register: each operation takes effect at one instant inside its
/// interval, so the result is linearizable by construction.
fn generated(plan: &[(u8, u8, u8, u8)]) -> Vec<Operation> {
    let mut value: Option<Vec<u8>> = None;
    let mut ops = Vec::new();
    for (i, &(client, kind, lead, lag)) in plan.iter().enumerate() {
        let at = 100 * i as u64 + 50;
        let call = at - u64::from(lead % 50);
        let ret = at + u64::from(lag % 50) + 1;
        let key = b"k".to_vec();
        let op = match kind % 3 {
            0 => {
                value = Some(vec![b'a' + (i % 26) as u8, i as u8]);
                OpKind::Put {
                    key,
                    value: value.clone().unwrap_or_default(),
                }
            }
            1 => {
                value = None;
                OpKind::Delete { key }
            }
            _ => OpKind::Get {
                key,
                found: value.clone(),
            },
        };
        ops.push(Operation {
            client: u64::from(client % 6),
            call,
            ret: Some(ret),
            kind: op,
        });
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn histories_of_a_real_register_pass(plan in prop::collection::vec(any::<(u8, u8, u8, u8)>(), 1..60)) {
        prop_assert!(check_kv(&generated(&plan)).is_ok());
    }

    #[test]
    fn a_read_rewritten_to_an_impossible_value_fails(plan in prop::collection::vec(any::<(u8, u8, u8, u8)>(), 1..60)) {
        let mut ops = generated(&plan);
        let n = ops.len();
        ops.push(Operation {
            client: 9,
            call: 100 * n as u64 + 10,
            ret: Some(100 * n as u64 + 20),
            kind: OpKind::Get { key: b"k".to_vec(), found: Some(b"never written".to_vec()) },
        });
        prop_assert!(check_kv(&ops).is_err());
    }
}
