//! `NodeConfig::parse` and `validate` on arbitrary text: either a typed refusal or a config that
//! renders back to YAML which parses to the same config (what `tinykv config show` prints must be
//! loadable again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinykv_node::config::NodeConfig;

fuzz_target!(|text: &str| {
    let Ok(config) = NodeConfig::parse(text) else {
        return;
    };
    let valid = config.validate().is_ok();
    let rendered = config.to_yaml();
    let back = NodeConfig::parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered config does not parse: {e}\n{rendered}"));
    assert_eq!(back, config, "rendered:\n{rendered}");
    assert_eq!(back.validate().is_ok(), valid);
});
