//! `examples/bring-up.sh` runs here so it cannot rot.

mod support;

use std::process::{Command, Stdio};

use support::{BIN, Guard, free_base_port};

#[test]
fn the_bring_up_example_runs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let work = tmp.path().join("work");
    let _guard = Guard::new(&work);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bring-up.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(&work)
        .env("TINYKV_BIN", BIN)
        .env("BASE_PORT", free_base_port(4).to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bring-up.sh failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("bring-up ok"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "hello"), "{stdout}");
}
