//! `fdmctl plugin`: check, sign and create keys for plugins (docs/plugins.md).

use crate::cli::*;
use anyhow::{Context, bail};
use std::path::Path;
use std::process::ExitCode;

pub fn plugin(action: PluginAction) -> anyhow::Result<ExitCode> {
    use fdmd::plugins::{checks, conformance};
    match action {
        PluginAction::Check {
            file,
            config_json,
            trusted_keys,
            input,
            timeout_ms,
        } => {
            let config: serde_json::Value =
                serde_json::from_str(&config_json).context("--config-json is not JSON")?;
            let input = match input {
                Some(p) => {
                    Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
                }
                None => None,
            };
            let exe = std::env::current_exe().context("finding fdmctl itself")?;
            let ok = conformance::run(&conformance::CheckOptions {
                file: &file,
                config,
                trusted_keys,
                input,
                helper_exe: &exe,
                timeout: std::time::Duration::from_millis(timeout_ms.clamp(10, 600_000)),
                owner_uid: 0,
            });
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PluginAction::Sign { key, file } => {
            let seed = read_seed(&key)?;
            let sig = checks::sign_file(&file, &seed)?;
            let out = checks::signature_path(&file);
            std::fs::write(&out, sig).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} signed by {}",
                file.display(),
                checks::public_key_hex(&seed)
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginAction::Keygen { key } => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            if key.exists() {
                bail!("{} exists; not overwriting a key", key.display());
            }
            fdmd::access::write_private_atomically(
                &key,
                format!("{}\n", hex::encode(seed)).as_bytes(),
            )
            .with_context(|| format!("writing {}", key.display()))?;
            println!("{}", checks::public_key_hex(&seed));
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn read_seed(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{} must hold 64 hex characters", path.display()))
}
