//! Opening a stopped node's data dir for `--data-dir` inspection (`raft state|log`, `region
//! list|show|locate`), and what its errors tell the user.

use std::path::Path;

use tinykv_node::inspect::InspectError;
use tinykv_storage::{Engines, OpenOptions};

use crate::exit::{CliError, CliResult, Exit};

/// Opens `dir` read for inspection; a missing dir or a running node's lock is said plainly.
pub fn open_offline(dir: &Path) -> CliResult<Engines> {
    if !dir.is_dir() {
        return Err(CliError::new(
            Exit::NotFound,
            format!("data dir {} does not exist", dir.display()),
        )
        .hint("pass the node's data-dir (see its config file)"));
    }
    Engines::open(dir, OpenOptions::default())
        .map(|(engines, _)| engines)
        .map_err(|e| {
            CliError::failed(format!("cannot open data dir {}: {e}", dir.display())).hint(
                "offline inspection needs the node stopped; for a running node use -e HOST:PORT",
            )
        })
}

pub fn inspect_error(dir: &Path, e: InspectError) -> CliError {
    match e {
        InspectError::RegionNotFound(_) => {
            CliError::new(Exit::NotFound, format!("{e} ({})", dir.display()))
                .hint("`tinykv region list --data-dir DIR` names its regions")
        }
        InspectError::Storage(_) => CliError::failed(format!("reading {}: {e}", dir.display())),
    }
}
