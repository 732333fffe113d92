//! Black-box tests of a real multi-process cluster: `tinykv cluster up --detach` starts three
//! node processes, and every other step goes through the `tinykv` command line.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Guard, Run, free_base_port, kill9, tinykv, wait_for};

/// Generous caps: two shared cores also build and test other crates.
const CAP: Duration = Duration::from_secs(30);

struct Env {
    endpoints: String,
    ca: String,
    cert: String,
    key: String,
}

impl Env {
    fn read(dir: &Path) -> Env {
        let text = std::fs::read_to_string(dir.join("env")).expect("DIR/env");
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} missing from env:\n{text}"))
                .to_string()
        };
        Env {
            endpoints: get("TINYKV_ENDPOINTS"),
            ca: get("TINYKV_CA"),
            cert: get("TINYKV_CERT"),
            key: get("TINYKV_KEY"),
        }
    }

    /// `tinykv -e ENDPOINTS --ca .. --cert .. --key .. ARGS`.
    fn run_at(&self, endpoints: &str, args: &[&str]) -> Run {
        let mut all = vec![
            "-e",
            endpoints,
            "--ca",
            &self.ca,
            "--cert",
            &self.cert,
            "--key",
            &self.key,
            "--timeout",
            "3s",
        ];
        all.extend_from_slice(args);
        tinykv(&all)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_at(&self.endpoints, args)
    }
}

fn raft_state(env: &Env, addr: &str) -> Option<Value> {
    let r = env.run_at(addr, &["raft", "state", "1", "-o", "json"]);
    (r.code == 0).then(|| r.json())
}

fn leader_store(env: &Env) -> Option<u64> {
    let r = env.run(&["region", "list", "-o", "json"]);
    if r.code != 0 {
        return None;
    }
    r.json()["regions"][0]["leader_store"].as_u64()
}

#[test]
fn a_three_process_cluster_through_the_command_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("pg");
    let dir_s = dir.to_str().expect("utf-8 path").to_string();
    let mut guard = Guard::new(&dir);
    let base = free_base_port(3);
    let up = tinykv(&[
        "cluster",
        "up",
        "--detach",
        "--nodes",
        "3",
        "--dir",
        &dir_s,
        "--base-port",
        &base.to_string(),
    ])
    .ok();
    assert!(
        up.stdout.contains("export TINYKV_ENDPOINTS="),
        "{}",
        up.stdout
    );
    // This test shapes membership by hand (`node join`, promote, leave): the placement
    // driver goes off, and the cluster comes back up as it is (`tests/rebalance.rs` runs
    // the driver).
    tinykv(&["cluster", "down", "--dir", &dir_s]).ok();
    for i in 1..=3 {
        let path = dir.join(format!("node{i}/config.yaml"));
        let text = std::fs::read_to_string(&path).expect("node config");
        assert!(text.contains("placement:\n  enabled: true\n"), "{text}");
        let text = text.replace(
            "placement:\n  enabled: true\n",
            "placement:\n  enabled: false\n",
        );
        std::fs::write(&path, text).expect("node config");
    }
    tinykv(&["cluster", "up", "--detach", "--dir", &dir_s]).ok();
    let env = Env::read(&dir);
    let addrs: Vec<String> = env.endpoints.split(',').map(str::to_string).collect();
    assert_eq!(addrs.len(), 3);

    // Status: every node up, one leader.
    let status = tinykv(&["cluster", "status", "--dir", &dir_s, "-o", "json"])
        .ok()
        .json();
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["up"], json!(true), "{n}");
        assert!(n["pid"].as_i64().is_some(), "{n}");
        assert_eq!(n["regions"], json!(1));
        for field in ["id", "addr", "leader_of", "term", "applied"] {
            assert!(!n[field].is_null(), "{field} missing in {n}");
        }
        assert_eq!(n["healthy"], json!(true), "{n}");
        assert!(
            n["version"]
                .as_str()
                .is_some_and(|v| v.contains("(commit ")),
            "{n}"
        );
    }

    // Keys through `kv`, JSON checked for each command.
    assert_eq!(
        env.run(&["kv", "put", "a", "1", "-o", "json"]).ok().json()["ok"],
        json!(true)
    );
    env.run(&["kv", "put", "b", "2"]).ok();
    env.run(&["kv", "put", "c", "3"]).ok();
    assert_eq!(
        env.run(&["kv", "get", "a", "-o", "json"]).ok().json(),
        json!({"key": "a", "found": true, "value": "1"})
    );
    let scan = env
        .run(&["kv", "scan", "--from", "a", "--to", "c", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        scan,
        json!({"pairs": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]})
    );
    // Compare-and-swap: written only over the expected value (or absence), exit 8 otherwise.
    env.run(&["kv", "put", "lock", "me", "--if-absent"]).ok();
    let taken = env.run(&["kv", "put", "lock", "you", "--if-absent", "-o", "json"]);
    assert_eq!(taken.code, 8, "{}", taken.stderr);
    assert_eq!(
        taken.json(),
        json!({"key": "lock", "swapped": false, "previous": "me"})
    );
    let wrong = env.run(&["kv", "cas", "lock", "you", "them"]);
    assert_eq!(wrong.code, 8, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("it holds \"me\""), "{}", wrong.stderr);
    assert_eq!(
        env.run(&["kv", "cas", "lock", "me", "them", "-o", "json"])
            .ok()
            .json(),
        json!({"key": "lock", "swapped": true, "previous": "me"})
    );
    env.run(&["kv", "delete", "lock"]).ok();
    env.run(&["kv", "delete", "b", "-o", "json"]).ok();
    let missing = env.run(&["kv", "get", "b", "-o", "json"]);
    assert_eq!(missing.code, 5, "{}", missing.stderr);
    assert_eq!(missing.json(), json!({"key": "b", "found": false}));
    let stale = env
        .run(&["kv", "scan", "--stale", "-o", "json"])
        .ok()
        .json();
    assert_eq!(stale["pairs"].as_array().map(Vec::len), Some(2), "{stale}");

    // One region, three peers, a leader.
    let regions = env.run(&["region", "list", "-o", "json"]).ok().json();
    let list = regions["regions"].as_array().expect("regions");
    assert_eq!(list.len(), 1, "{regions}");
    assert_eq!(list[0]["id"], json!(1));
    assert_eq!(list[0]["start"], json!(""));
    assert_eq!(list[0]["end"], json!(""));
    assert_eq!(list[0]["peers"].as_array().map(Vec::len), Some(3));
    assert!(list[0]["epoch"]["conf_ver"].as_u64().is_some());
    let leader = list[0]["leader_store"].as_u64().expect("a leader");
    assert!((1..=3).contains(&leader));

    // A certificate from another CA is refused: exit 4.
    let other = tmp.path().join("other-ca");
    let other_s = other.to_str().expect("utf-8");
    tinykv(&["cert", "init-ca", "--out", other_s]).ok();
    tinykv(&["cert", "issue", "intruder", "--client", "--ca-dir", other_s]).ok();
    let intruder = Env {
        endpoints: env.endpoints.clone(),
        ca: other.join("ca.pem").display().to_string(),
        cert: other.join("intruder.pem").display().to_string(),
        key: other.join("intruder-key.pem").display().to_string(),
    };
    let refused = intruder.run(&["kv", "get", "a"]);
    assert_eq!(refused.code, 4, "stderr: {}", refused.stderr);

    // A fourth store joins and catches up by snapshot after the log is compacted.
    for i in 0..20 {
        env.run(&["kv", "put", &format!("k{i:02}"), "v"]).ok();
    }
    env.run(&["compact", "log", "1"]).ok();
    let leader_addr = &addrs[leader as usize - 1];
    let compacted = wait_for("the leader's log to be truncated", CAP, || {
        raft_state(&env, leader_addr).filter(|s| s["truncated_index"].as_u64() > Some(5))
    });
    let node4 = dir.join("node4");
    let node4_s = node4.to_str().expect("utf-8");
    tinykv(&[
        "cert",
        "issue",
        "store-4",
        "--ca-dir",
        env.ca.trim_end_matches("/ca.pem"),
        "--san",
        "127.0.0.1",
        "--out",
        node4_s,
    ])
    .ok();
    let port4 = free_base_port(1);
    let addr4 = format!("127.0.0.1:{port4}");
    let config4 = node4.join("config.yaml");
    std::fs::write(
        &config4,
        format!(
            "store-id: 4\nlisten-addr: {addr4}\ndata-dir: {}\ninitial-cluster-token: tinykv-playground\ntls:\n  ca: {}\n  cert: {}\n  key: {}\nplacement:\n  enabled: false\n",
            node4.join("data").display(),
            env.ca,
            node4.join("store-4.pem").display(),
            node4.join("store-4-key.pem").display()
        ),
    )
    .expect("write node4 config");
    tinykv(&["config", "check", config4.to_str().expect("utf-8")]).ok();
    let log4 = std::fs::File::create(node4.join("node.log")).expect("node4 log");
    let mut join = Command::new(support::BIN)
        .args([
            "node",
            "join",
            "--config",
            config4.to_str().expect("utf-8"),
            "--seed",
            leader_addr,
        ])
        .stdin(Stdio::null())
        .stdout(log4.try_clone().expect("log"))
        .stderr(log4)
        .spawn()
        .expect("spawn node join");
    guard.extra.push(join.id() as i32);
    // `cluster down` finds the joined node like the others.
    std::fs::write(node4.join("pid"), join.id().to_string()).expect("node4 pid");
    let target = compacted["applied"].as_u64().expect("applied");
    let joined = wait_for("store 4 to catch up", CAP, || {
        if let Ok(Some(status)) = join.try_wait() {
            panic!(
                "node join exited: {status}; log:\n{}",
                std::fs::read_to_string(node4.join("node.log")).unwrap_or_default()
            );
        }
        raft_state(&env, &addr4).filter(|s| s["applied"].as_u64() >= Some(target))
    });
    assert!(
        joined["truncated_index"].as_u64() >= compacted["truncated_index"].as_u64(),
        "store 4 did not start from a snapshot: {joined}"
    );
    // It joined as a learner and `node join` promotes it once caught up: four voters.
    let regions = wait_for("store 4 to be promoted", CAP, || {
        let regions = env.run(&["region", "list", "-o", "json"]).ok().json();
        let peers = regions["regions"][0]["peers"].as_array().cloned()?;
        let voter4 = peers
            .iter()
            .any(|p| p["store"] == 4 && p["role"] == "voter");
        (peers.len() == 4 && voter4).then_some(regions)
    });
    let peer4 = regions["regions"][0]["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["store"] == 4).cloned())
        .expect("store 4's peer");
    // Its peer id came from the allocator, above the founders' 1 to 3.
    assert!(peer4["id"].as_u64() > Some(3), "{regions}");
    wait_for("node join to say it is a voter", CAP, || {
        let log = std::fs::read_to_string(node4.join("node.log")).unwrap_or_default();
        log.contains("store 4 is a voter of regions [1]")
            .then_some(())
    });
    // `node promote` of a voter has nothing to do; of a store that holds no peer, exit 5.
    let promoted = env.run(&["node", "promote", "4", "-o", "json"]).ok().json();
    assert_eq!(promoted["promoted_in"], serde_json::json!([]), "{promoted}");
    let missing = env.run(&["node", "promote", "9"]);
    assert_eq!(missing.code, 5, "{}", missing.stderr);

    // kill -9 of the leader: a put succeeds again once a new leader is elected.
    let leader = leader_store(&env).expect("leader");
    let pid: i32 = std::fs::read_to_string(dir.join(format!("node{leader}/pid")))
        .expect("leader pid")
        .trim()
        .parse()
        .expect("pid");
    kill9(pid);
    let killed_at = Instant::now();
    // The dead node goes last so the client asks a live one first.
    let mut survivors: Vec<String> = (1..=3)
        .filter(|&s| s != leader)
        .map(|s| addrs[s as usize - 1].clone())
        .collect();
    survivors.push(addr4.clone());
    let live = survivors.join(",");
    wait_for("a put after the leader was killed", CAP, || {
        (env.run_at(&live, &["kv", "put", "after-kill", "yes"]).code == 0).then_some(())
    });
    let recovered = killed_at.elapsed();
    eprintln!("put succeeded {recovered:?} after kill -9 of the leader (election timeout 1-2 s)");
    assert_eq!(
        env.run_at(&live, &["kv", "get", "after-kill", "-o", "json"])
            .ok()
            .json()["value"],
        json!("yes")
    );

    // A split by hand: two regions tiling the keys, every key still readable, the new
    // region's Raft state online, offline below.
    let split = env
        .run_at(
            &live,
            &["region", "split", "1", "--split-key", "k10", "-o", "json"],
        )
        .ok()
        .json();
    let halves = split["regions"].as_array().cloned().expect("regions");
    assert_eq!(halves.len(), 2, "{split}");
    assert_eq!(halves[0]["end"], json!("k10"));
    assert_eq!(halves[1]["start"], json!("k10"));
    let right = halves[1]["id"].as_u64().expect("new region id");
    let located = env
        .run_at(&live, &["region", "locate", "k15", "-o", "json"])
        .ok()
        .json();
    assert_eq!(located["id"], json!(right), "{located}");
    let listed = env
        .run_at(&live, &["region", "list", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        listed["regions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let scan = env
        .run_at(
            &live,
            &["kv", "scan", "--from", "k05", "--to", "k15", "-o", "json"],
        )
        .ok()
        .json();
    assert_eq!(scan["pairs"].as_array().map(Vec::len), Some(10), "{scan}");
    let right_s = right.to_string();
    wait_for("the new region's raft state on a follower", CAP, || {
        let r = env.run_at(&survivors[0], &["raft", "state", &right_s, "-o", "json"]);
        (r.code == 0).then_some(())
    });

    // Online, the leader also tells what it knows of every other peer: the two live ones hold
    // its whole log, the killed one has not answered lately.
    wait_for("the leader's view of the other peers", CAP, || {
        let state = survivors
            .iter()
            .find_map(|a| raft_state(&env, a).filter(|s| s["role"] == "leader"))?;
        let last = state["last_index"].as_u64()?;
        let progress = state["progress"].as_array()?;
        let holding = progress
            .iter()
            .filter(|p| p["matched"].as_u64() == Some(last) && p["state"] == "replicate")
            .count();
        let silent = progress
            .iter()
            .filter(|p| p["recent_active"] == false)
            .count();
        (progress.len() == 3 && holding == 2 && silent == 1).then_some(())
    });

    // `--store` names the peer to ask, whichever node -e names first; the killed store's is
    // unreachable (with a hint), and a store that is not in the cluster is refused.
    let first_survivor = (1..=3).find(|&s| s != leader).expect("a survivor");
    let asked = |endpoints: &str, store: Option<u64>| {
        let store = store.map(|s| s.to_string());
        let mut args = vec!["raft", "state", "1", "-o", "json"];
        if let Some(s) = &store {
            args.extend(["--store", s.as_str()]);
        }
        env.run_at(endpoints, &args)
    };
    let direct = asked(&survivors[0], None).ok().json();
    let through_another = asked(&survivors[1], Some(first_survivor)).ok().json();
    assert_eq!(direct["peer"], through_another["peer"], "{through_another}");
    let dead = asked(&live, Some(leader));
    assert_eq!(dead.code, 3, "{}", dead.stderr);
    assert!(dead.stderr.contains("--data-dir"), "{}", dead.stderr);
    let unknown = asked(&live, Some(99));
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("store 99 is not in the cluster"),
        "{}",
        unknown.stderr
    );

    // `raft state` online equals offline for the same node, once stopped, but for what only a
    // running peer knows.
    let survivor = survivors[0].clone();
    let survivor_store = (1..=3).find(|&s| s != leader).expect("a survivor");
    let mut online = wait_for("a settled raft state", CAP, || {
        let a = raft_state(&env, &survivor)?;
        std::thread::sleep(Duration::from_millis(500));
        let b = raft_state(&env, &survivor)?;
        (a == b).then_some(b)
    });
    assert!(
        online["role"] == "leader" || online["role"] == "follower",
        "{online}"
    );
    for live_only in ["role", "leader_peer", "hibernating", "progress"] {
        online.as_object_mut().map(|o| o.remove(live_only));
    }
    let down = tinykv(&["cluster", "down", "--dir", &dir_s, "-o", "json"])
        .ok()
        .json();
    assert_eq!(down["stopped"].as_array().map(Vec::len), Some(3), "{down}");
    let _ = join.wait();
    let data = dir.join(format!("node{survivor_store}/data"));
    let offline = tinykv(&[
        "raft",
        "state",
        "1",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "-o",
        "json",
    ])
    .ok()
    .json();
    assert_eq!(online, offline);
    let offline_right = tinykv(&[
        "raft",
        "state",
        &right_s,
        "--data-dir",
        data.to_str().expect("utf-8"),
        "-o",
        "json",
    ])
    .ok()
    .json();
    assert_eq!(offline_right["region"], json!(right), "{offline_right}");

    // The stopped store's own regions and store directory: the two halves of the split, as the
    // running cluster listed them, with no leader (only a running store knows one) and their
    // keys counted; `locate` finds k15 in the right half.
    let data_s = data.to_str().expect("utf-8");
    let stored = tinykv(&["region", "list", "--data-dir", data_s, "-o", "json"])
        .ok()
        .json();
    let ids = |doc: &Value| -> Vec<u64> {
        doc["regions"]
            .as_array()
            .map(|rs| rs.iter().filter_map(|r| r["id"].as_u64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(ids(&stored), ids(&listed), "{stored}");
    let halves = stored["regions"].as_array().cloned().expect("regions");
    assert!(
        halves
            .iter()
            .all(|r| r["state"] == "normal" && r["leader_store"].is_null()),
        "{stored}"
    );
    assert_eq!(halves[0]["end"], json!("k10"), "{stored}");
    assert_eq!(halves[1]["start"], json!("k10"), "{stored}");
    assert!(
        halves[1]["approximate_keys"].as_u64() >= Some(5),
        "k10..k14 at least: {stored}"
    );
    assert_eq!(stored["store_id"], json!(survivor_store), "{stored}");
    let known: Vec<u64> = stored["stores"]
        .as_array()
        .map(|ss| ss.iter().filter_map(|s| s["store_id"].as_u64()).collect())
        .unwrap_or_default();
    assert!(known.contains(&4) && known.contains(&leader), "{stored}");
    let located = tinykv(&[
        "region",
        "locate",
        "k15",
        "--data-dir",
        data_s,
        "-o",
        "json",
    ])
    .ok()
    .json();
    assert_eq!(located["id"], json!(right), "{located}");
    let table = tinykv(&["region", "list", "--data-dir", data_s]).ok();
    assert!(
        table.stdout.starts_with("ID") && table.stdout.contains("knows: store"),
        "{}",
        table.stdout
    );
    let online_table = tinykv(&[
        "raft",
        "log",
        "1",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ])
    .ok();
    assert!(
        online_table.stdout.starts_with("INDEX"),
        "{}",
        online_table.stdout
    );

    // Every node is down now: status says so with exit 6.
    let status = tinykv(&["cluster", "status", "--dir", &dir_s, "-o", "json"]);
    assert_eq!(status.code, 6, "{}", status.stderr);
    assert!(
        status.json()["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .all(|n| n["up"] == json!(false))
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tinykv(&["kv"]).code, 2);
    assert_eq!(tinykv(&["kv", "get"]).code, 2);
    assert_eq!(tinykv(&["no-such-noun"]).code, 2);
    assert_eq!(tinykv(&["raft", "state", "not-a-number"]).code, 2);
    // Missing endpoints or certificates are usage errors too, named in the message.
    let r = tinykv(&["kv", "get", "a"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("endpoint"), "{}", r.stderr);
}

#[test]
fn an_unreachable_endpoint_exits_3() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ca = tmp.path().join("ca");
    let ca_s = ca.to_str().expect("utf-8");
    tinykv(&["cert", "init-ca", "--out", ca_s]).ok();
    tinykv(&["cert", "issue", "tester", "--client", "--ca-dir", ca_s]).ok();
    let endpoint = format!("127.0.0.1:{}", free_base_port(1));
    let r = tinykv(&[
        "-e",
        &endpoint,
        "--ca",
        &format!("{ca_s}/ca.pem"),
        "--cert",
        &format!("{ca_s}/tester.pem"),
        "--key",
        &format!("{ca_s}/tester-key.pem"),
        "--timeout",
        "1s",
        "kv",
        "get",
        "a",
    ]);
    assert_eq!(r.code, 3, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("hint"), "{}", r.stderr);
}

#[test]
fn config_default_checks_and_a_bad_key_is_named() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let default = tinykv(&["config", "default"]).ok().stdout;
    let good = tmp.path().join("good.yaml");
    // The default leaves the TLS paths empty, which validation refuses; fill them in.
    let filled = default
        .replace("  ca: ''", "  ca: /c/ca.pem")
        .replace("  cert: ''", "  cert: /c/n.pem")
        .replace("  key: ''", "  key: /c/n-key.pem");
    std::fs::write(&good, filled).expect("write");
    let r = tinykv(&["config", "check", good.to_str().expect("utf-8")]).ok();
    assert_eq!(r.stdout.trim(), "ok");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "store-id: 1\nraft:\n  heartbeat-tick: 3\n").expect("write");
    let r = tinykv(&["config", "check", bad.to_str().expect("utf-8")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("heartbeat-tick"), "{}", r.stderr);
}
