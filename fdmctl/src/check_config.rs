//! `fdmctl check-config`: check a configuration and report every problem with its key: the
//! same checks as `fdmd check-config` (values, then the files it names: plugins, PIN file).

use std::path::Path;
use std::process::ExitCode;

/// Exit 0 with a one-line summary when the configuration is good; 78 with every problem when not.
pub fn run(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let sources = fdmd::config::Sources::system(config);
    match fdmd::config::load(&sources, &[])
        .and_then(|c| fdmd::config::require_establishment(&c).map(|()| c))
        .and_then(|c| fdmd::config::check_files(&c).map(|()| c))
    {
        Ok(c) => {
            println!(
                "configuration OK: fdm {} data {} HTTP {} MQTT {:?} {}",
                c.fdm.id,
                c.fdm.data_dir.display(),
                c.http.listen,
                c.mqtt.mode,
                c.mqtt.listen
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("configuration is not valid:");
            for p in &e.problems {
                println!("  {p}");
            }
            Ok(ExitCode::from(fdmd::config::EXIT_CONFIG))
        }
    }
}
