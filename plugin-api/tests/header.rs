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

/// A C++ plugin built with hidden visibility, including the header twice, exports the entry
/// symbol unmangled: the header has `extern "C"` guards, its prototype carries the export
/// attribute and sits inside the include guard.
#[test]
fn a_cpp_plugin_built_with_hidden_visibility_exports_the_entry_symbol() {
    let Some(cxx) = ["c++", "g++", "clang++"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        assert!(
            std::env::var_os("FDMD_REQUIRE_MOSQUITTO").is_none(),
            "no C++ compiler, and the test command installs one (g++)"
        );
        eprintln!("skipped: no C++ compiler");
        return;
    };
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("plugin.cpp");
    std::fs::write(
        &source,
        "#include \"fdmd_plugin.h\"\n#include \"fdmd_plugin.h\"\n\
         FdmdRc fdmd_plugin_entry_v1(const FdmdHostApiV1 *, const FdmdPluginV1 **out) {\n\
           *out = nullptr; return FDMD_RC_UNAVAILABLE; }\n",
    )
    .unwrap();
    let library = dir.path().join("libplugin.so");
    let out = std::process::Command::new(cxx)
        .args([
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            "-Wall",
            "-Werror",
            "-I",
        ])
        .arg(&include)
        .arg("-o")
        .arg(&library)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cxx}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nm = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&library)
        .output()
        .unwrap();
    let symbols = String::from_utf8_lossy(&nm.stdout);
    assert!(
        symbols
            .lines()
            .any(|l| l.ends_with(" T fdmd_plugin_entry_v1")),
        "the entry symbol is exported unmangled:\n{symbols}"
    );
}
