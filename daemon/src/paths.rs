//! Well-known file locations inside a data directory.

use std::path::{Path, PathBuf};

/// Data directory of an installed fdmd.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/fdmd";

/// Directory of installed plugins (`fdmd-plugin-*` packages put their `.so` files here).
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/fdmd/plugins";

/// The journal database inside a data directory.
pub fn journal_file(data_dir: &Path) -> PathBuf {
    data_dir.join("journal.sqlite")
}

/// The development signer's key inside a data directory.
pub fn dev_signer_key(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-signer.key")
}
