//! `fdmd check-config` reports what the daemon would refuse (issue 15, point 8): a plugin
//! directory writable by its group, a symlinked plugin, `plugins.allow_unsigned` outside
//! `--dev`, a PIN file readable by others. Exit 78 with the key named; a good setup passes.
//! (Plugin files must be root-owned: like the plugin tests, this runs as root.)
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::{FDMD, write_config};

const SEED: [u8; 32] = [7; 32];

/// A plugin directory (mode `dir_mode`) holding a signed `vendor.so`, and the configuration
/// loading it, with `extra` appended.
fn setup(root: &Path, dir_mode: u32, extra: &str) -> std::path::PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vendor.so"), b"not really a library").unwrap();
    std::fs::set_permissions(
        dir.join("vendor.so"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let signature = fdmd::plugins::checks::sign_file(&dir.join("vendor.so"), &SEED).unwrap();
    std::fs::write(dir.join("vendor.so.sig"), signature).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    let key = fdmd::plugins::checks::public_key_hex(&SEED);
    write_config(
        root,
        1,
        2,
        &format!(
            "[plugins]\ndir = \"{}\"\ntrusted_keys = [\"{key}\"]\n{extra}\n[[plugins.instance]]\nname = \"vendor\"\nfile = \"vendor.so\"\nregister = \"till-1\"\n",
            dir.display()
        ),
    )
}

fn check_config(config: &Path) -> (i32, String) {
    let out = Command::new(FDMD)
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn assert_refused(config: &Path, key: &str, words: &str) {
    let (code, out) = check_config(config);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains(&format!("{key}:")) && out.contains(words),
        "{key} / {words}: {out}"
    );
}

#[test]
fn a_good_setup_passes() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path(), 0o755, "");
    let (code, out) = check_config(&config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"), "{out}");
}

#[test]
fn a_group_writable_plugin_directory_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path(), 0o775, "");
    assert_refused(&config, "plugins.dir", "writable by group or others");
}

#[test]
fn a_symlinked_plugin_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path(), 0o755, "");
    let dir = root.path().join("plugins");
    std::fs::rename(dir.join("vendor.so"), root.path().join("real.so")).unwrap();
    std::os::unix::fs::symlink(root.path().join("real.so"), dir.join("vendor.so")).unwrap();
    assert_refused(&config, "plugins.instance[0].file", "vendor");
}

#[test]
fn allow_unsigned_outside_dev_is_reported_not_ignored() {
    let root = tempfile::tempdir().unwrap();
    let config = setup(root.path(), 0o755, "allow_unsigned = true");
    assert_refused(&config, "plugins.allow_unsigned", "only with --dev");
}

#[test]
fn a_pin_file_readable_by_others_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let pin = root.path().join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = write_config(
        root.path(),
        1,
        2,
        &format!(
            "[signer]\nbackend = \"pcsc\"\n[signer.pcsc]\nreader = \"x\"\npin_file = \"{}\"\n",
            pin.display()
        ),
    );
    assert_refused(&config, "signer.pcsc.pin_file", "mode 644");
    // The same file at 0600 passes.
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = check_config(&config);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn an_establishment_without_identity_is_refused_outside_dev_mode() {
    // Every VAT ticket carries the establishment's name, address and VAT number (issue 17,
    // point 10): without them, check-config and start refuse with 78, naming each key.
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        1,
        2,
        "[establishment]\nname = \"\"\naddress = \"\"\nvat_number = \"BE0123456789\"\n",
    );
    assert_refused(&config, "establishment.name", "required outside --dev");
    assert_refused(&config, "establishment.address", "required outside --dev");
    assert_refused(
        &config,
        "establishment.vat_number",
        "not a Belgian VAT number",
    );
    let start = std::process::Command::new(FDMD)
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(start.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&start.stderr).contains("establishment.name"),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
}
