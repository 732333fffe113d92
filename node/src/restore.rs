//! Restoring a backup offline: the data dirs of a new cluster's founding stores, each
//! bootstrapped as a first start would (the store's identity, one region over every key with
//! a peer on every founding store) and then filled with the backup's pairs. Every store holds
//! the same data at the same applied index, as replicas do; the region splits by size once the
//! nodes run.

use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tinykv_client::backup_file::{BackupError, BackupHeader, BackupReader, Block};
use tinykv_storage::engines::{Engines, OpenOptions};
use tinykv_storage::{StorageError, StoreIdent};

use crate::config::{ConfigError, NodeConfig};

/// What a restore wrote.
#[derive(Clone, Debug)]
pub struct RestoreSummary {
    pub header: BackupHeader,
    /// The data dirs written, in the order of the configurations given.
    pub data_dirs: Vec<PathBuf>,
}

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "data dir {0} already exists; a backup is restored into a new cluster only (remove it, \
         or choose another)"
    )]
    DirExists(PathBuf),
    #[error("store {0}: initial-cluster is empty; a restored store founds a cluster")]
    NoInitialCluster(u64),
    #[error("store {0} is not in initial-cluster; a restored store is one of the founders")]
    NotAFounder(u64),
    #[error("data dir {dir}: {source}")]
    Storage { dir: PathBuf, source: StorageError },
}

/// Writes one data dir per configuration from the backup `input` (read once for all of them);
/// `progress` hears the bytes of the file read so far. On any error the data dirs this call
/// created are removed again.
pub fn restore(
    configs: &[NodeConfig],
    input: impl Read,
    mut progress: impl FnMut(u64),
) -> Result<RestoreSummary, RestoreError> {
    for config in configs {
        // Only what the data dir records is checked: TLS files, ports and the rest belong to
        // the node that will run on it.
        if config.initial_cluster.is_empty() {
            return Err(RestoreError::NoInitialCluster(config.store_id));
        }
        if !config
            .initial_cluster
            .iter()
            .any(|m| m.store_id == config.store_id)
        {
            return Err(RestoreError::NotAFounder(config.store_id));
        }
        if config.initial_cluster_token.is_empty() {
            return Err(RestoreError::Config(ConfigError::Invalid {
                key: "initial-cluster-token",
                message: "must not be empty".into(),
            }));
        }
        if config.data_dir.exists() {
            return Err(RestoreError::DirExists(config.data_dir.clone()));
        }
    }
    let dirs: Vec<PathBuf> = configs.iter().map(|c| c.data_dir.clone()).collect();
    let result = write_all(configs, input, &mut progress);
    if result.is_err() {
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result.map(|header| RestoreSummary {
        header,
        data_dirs: dirs,
    })
}

fn write_all(
    configs: &[NodeConfig],
    input: impl Read,
    progress: &mut impl FnMut(u64),
) -> Result<BackupHeader, RestoreError> {
    let mut reader = BackupReader::open(input)?;
    let mut stores = Vec::new();
    for config in configs {
        stores.push((config.data_dir.as_path(), bootstrap(config)?));
    }
    while let Some(block) = reader.next_block()? {
        if let Block::Pairs(pairs) = block {
            for (dir, engines) in &stores {
                engines
                    .load_user_data(pairs.iter().map(|(k, v)| (k, v)))
                    .map_err(storage_err(dir))?;
            }
            progress(reader.offset());
        }
    }
    for (dir, engines) in &stores {
        engines.sync().map_err(storage_err(dir))?;
    }
    Ok(reader.header().clone())
}

fn bootstrap(config: &NodeConfig) -> Result<Engines, RestoreError> {
    let dir = &config.data_dir;
    let cluster_id = config.cluster_id();
    let options = OpenOptions {
        expected_cluster_id: Some(cluster_id),
    };
    let (engines, _) = Engines::open(dir, options).map_err(storage_err(dir))?;
    engines
        .bootstrap_store(StoreIdent {
            cluster_id,
            store_id: config.store_id,
        })
        .map_err(storage_err(dir))?;
    crate::server::bootstrap_first_region(&engines, config).map_err(storage_err(dir))?;
    Ok(engines)
}

fn storage_err(dir: &Path) -> impl Fn(StorageError) -> RestoreError + '_ {
    move |source| RestoreError::Storage {
        dir: dir.to_path_buf(),
        source,
    }
}
