//! `config default|check`.

use tinykv_node::config::NodeConfig;

use crate::args::ConfigCmd;
use crate::exit::{CliError, CliResult};

pub fn run(cmd: ConfigCmd) -> CliResult {
    match cmd {
        ConfigCmd::Default => print!("{}", NodeConfig::default_yaml()),
        ConfigCmd::Check { file } => {
            NodeConfig::load(&file).map_err(|e| {
                CliError::failed(e.to_string())
                    .hint("`tinykv config default` prints every key with its meaning")
            })?;
            println!("ok");
        }
    }
    Ok(())
}
