//! Certificate roles through the `tinykv` binary against a `cluster up` playground: a refused
//! request exits 4 with the role it needs, the role the certificate has and how to get one
//! that may; `cluster up` hands out an admin and a readwrite certificate.

mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use support::{Guard, Run, free_base_port, tinykv};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A detached three-node playground, stopped (kill -9) on drop.
struct Playground {
    // Fields drop in order: the guard must read the pid files before the directory goes.
    _guard: Guard,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    endpoints: String,
    up: serde_json::Value,
}

impl Playground {
    fn up() -> Playground {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("pg");
        let guard = Guard::new(&dir);
        let base = free_base_port(3);
        let up = tinykv(&[
            "cluster",
            "up",
            "--detach",
            "--dir",
            path_str(&dir),
            "--base-port",
            &base.to_string(),
            "-o",
            "json",
        ])
        .ok()
        .json();
        Playground {
            _guard: guard,
            _tmp: tmp,
            endpoints: (0..3)
                .map(|i| format!("127.0.0.1:{}", base + i))
                .collect::<Vec<_>>()
                .join(","),
            dir,
            up,
        }
    }

    fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// `tinykv ARGS` with the certificate `NAME.pem` (and `NAME-key.pem`) from `dir`.
    fn run_as(&self, dir: &Path, name: &str, args: &[&str]) -> Run {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        let ca = self.certs().join("ca.pem");
        let mut all = vec![
            "-e",
            &self.endpoints,
            "--ca",
            path_str(&ca),
            "--cert",
            path_str(&cert),
            "--key",
            path_str(&key),
            "--timeout",
            "10s",
        ];
        all.extend_from_slice(args);
        tinykv(&all)
    }
}

/// Asserts `run` is a refusal exiting 4 that says what `request` needs and what `who` has, and
/// hints at the `cert issue` that makes a certificate that may.
fn assert_refused(run: &Run, request: &str, needed: &str, who: &str, had: &str) {
    assert_eq!(
        run.code, 4,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let message = format!(
        "permission denied: {request} needs a certificate with role {needed}; client \"{who}\" has role {had}"
    );
    assert!(
        run.stderr.contains(&message),
        "no `{message}` in:\n{}",
        run.stderr
    );
    let hint = format!("tinykv cert issue NAME --client --role {needed}");
    assert!(
        run.stderr.contains(&hint),
        "no `{hint}` in:\n{}",
        run.stderr
    );
}

#[test]
fn a_refused_request_exits_4_naming_the_role_it_needs() {
    let pg = Playground::up();
    let certs = pg.certs();
    assert_eq!(
        pg.up["client_certs"],
        json!([
            {
                "role": "admin",
                "cert": path_str(&certs.join("client.pem")),
                "key": path_str(&certs.join("client-key.pem")),
            },
            {
                "role": "readwrite",
                "cert": path_str(&certs.join("app.pem")),
                "key": path_str(&certs.join("app-key.pem")),
            },
        ])
    );

    // A readonly certificate, issued as an operator would.
    let viewer_dir = pg.dir.join("viewer");
    let issued = tinykv(&[
        "cert",
        "issue",
        "viewer",
        "--client",
        "--role",
        "readonly",
        "--ca-dir",
        path_str(&certs),
        "--out",
        path_str(&viewer_dir),
        "-o",
        "json",
    ])
    .ok()
    .json();
    assert_eq!(issued["role"], json!("readonly"));
    // A role belongs to client certificates only.
    let refused = tinykv(&[
        "cert",
        "issue",
        "store-9",
        "--role",
        "admin",
        "--ca-dir",
        path_str(&certs),
        "--out",
        path_str(&pg.dir.join("store9")),
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("--role applies to client certificates only"),
        "{}",
        refused.stderr
    );
    assert!(!pg.dir.join("store9").exists());

    // readonly reads and is refused a write, which changes nothing.
    pg.run_as(&certs, "client", &["kv", "put", "k", "v"]).ok();
    let got = pg.run_as(&viewer_dir, "viewer", &["kv", "get", "k"]).ok();
    assert_eq!(got.stdout.trim(), "v");
    pg.run_as(&viewer_dir, "viewer", &["region", "list"]).ok();
    let put = pg.run_as(&viewer_dir, "viewer", &["kv", "put", "k", "w"]);
    assert_refused(&put, "put", "readwrite", "viewer", "readonly");
    let got = pg.run_as(&certs, "client", &["kv", "get", "k"]).ok();
    assert_eq!(got.stdout.trim(), "v");
    // A backup only reads: readonly may take one, and a compare-and-swap is a write.
    let file = pg.dir.join("viewer.tkvbak");
    let saved = pg
        .run_as(
            &viewer_dir,
            "viewer",
            &["backup", "save", path_str(&file), "-o", "json"],
        )
        .ok()
        .json();
    assert_eq!(saved["keys"], json!(1));
    let cas = pg.run_as(&viewer_dir, "viewer", &["kv", "cas", "k", "v", "w"]);
    assert_refused(&cas, "cas", "readwrite", "viewer", "readonly");

    // readwrite (the playground's app.pem) writes, and may not change the cluster.
    pg.run_as(&certs, "app", &["kv", "put", "k", "w"]).ok();
    let leave = pg.run_as(&certs, "app", &["node", "leave", "3"]);
    assert_refused(&leave, "remove_peer", "admin", "app", "readwrite");
    let transfer = pg.run_as(&certs, "app", &["transfer-leader", "1", "2"]);
    assert_refused(&transfer, "transfer_leader", "admin", "app", "readwrite");
    let compact = pg.run_as(&certs, "app", &["compact", "log", "1"]);
    assert_refused(&compact, "compact_log", "admin", "app", "readwrite");
    let status = pg
        .run_as(&certs, "app", &["region", "show", "1", "-o", "json"])
        .ok()
        .json();
    assert_eq!(
        status["peers"].as_array().map(Vec::len),
        Some(3),
        "a refused leave changed membership: {status}"
    );

    // admin (the playground's client.pem, which its env exports) may do all of it.
    pg.run_as(&certs, "client", &["compact", "log", "1"]).ok();
    pg.run_as(&certs, "client", &["transfer-leader", "1", "2"])
        .ok();
    let left = pg
        .run_as(&certs, "client", &["node", "leave", "3", "-o", "json"])
        .ok()
        .json();
    assert_eq!(left, json!({"store": 3, "removed_from": [1]}));
    let got = pg.run_as(&viewer_dir, "viewer", &["kv", "get", "k"]).ok();
    assert_eq!(got.stdout.trim(), "w");

    // A playground made before roles: its client.pem carries none (read as readwrite) and it
    // has no app.pem. Started again, it gets an admin client.pem and a readwrite app.pem.
    tinykv(&["cluster", "down", "--dir", path_str(&pg.dir)]).ok();
    for file in ["app.pem", "app-key.pem"] {
        std::fs::remove_file(certs.join(file)).expect("remove app certificate");
    }
    tinykv(&[
        "cert",
        "issue",
        "client",
        "--client",
        "--ca-dir",
        path_str(&certs),
    ])
    .ok();
    let restarted = tinykv(&["cluster", "up", "--detach", "--dir", path_str(&pg.dir)]).ok();
    assert!(
        restarted.stderr.contains("(role admin)") && restarted.stderr.contains("app.pem"),
        "{}",
        restarted.stderr
    );
    pg.run_as(&certs, "client", &["compact", "log", "1"]).ok();
    let compact = pg.run_as(&certs, "app", &["compact", "log", "1"]);
    assert_refused(&compact, "compact_log", "admin", "app", "readwrite");

    tinykv(&["cluster", "down", "--clean", "--dir", path_str(&pg.dir)]).ok();
}
