//! The committed C header must be what cbindgen generates from `src/abi.rs` today.
//! Regenerate with `FDMD_UPDATE_HEADER=1 cargo test -p fdmd-plugin-api --test header`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let path = dir.join("include/fdmd_plugin.h");
    if std::env::var_os("FDMD_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run FDMD_UPDATE_HEADER=1 cargo test -p fdmd-plugin-api --test header",
        path.display()
    );
}
