//! A GKS 2.0 FDM for the tests: a second fdmd serving the emulator (`[gks2_fdm]`), and an fdmd
//! signing with it (`[signer] backend = "gks2"`), over plain HTTP or HTTPS with the test CA.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses the part it needs

use crate::support::Daemon;
use crate::test_ca;

pub const DEVICE: &str = "emu-device-9";

/// The emulator as FDM `FDMEMU00009`, plain HTTP.
pub fn emulator(secret_file: &std::path::Path) -> (Daemon, std::net::SocketAddr) {
    emulator_with("FDMEMU00009", secret_file, "")
}

/// A second fdmd serving the GKS 2.0 emulator as `fdm_id`, with `extra` lines in `[gks2_fdm]`.
pub fn emulator_with(
    fdm_id: &str,
    secret_file: &std::path::Path,
    extra: &str,
) -> (Daemon, std::net::SocketAddr) {
    let d = Daemon::start_dev_with_config(&format!(
        "[gks2_fdm]\nlisten = \"127.0.0.1:0\"\ndevice_id = \"{DEVICE}\"\nfdm_id = \"{fdm_id}\"\nsecret_file = \"{}\"\n{extra}",
        secret_file.display()
    ));
    let addr = emulator_addr(&d.log());
    (d, addr)
}

/// The address the emulator listens on, from the daemon's log (`…/graphql on ADDR`).
pub fn emulator_addr(log: &str) -> std::net::SocketAddr {
    log.split("/graphql on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no emulator address in the log:\n{log}"))
        .parse()
        .unwrap()
}

/// `[gks2_fdm]` lines for HTTPS with the server certificate of `ca`, requiring client
/// certificates that `ca` signed.
pub fn https_with_client_certificates(ca: &test_ca::TestCa) -> String {
    format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nclient_ca_file = \"{}\"\n",
        ca.server_cert.display(),
        ca.server_key.display(),
        ca.ca.display()
    )
}

/// fdmd signing with the GKS 2.0 FDM at `addr`, reading the shared secret from `secret_file`,
/// with `extra` lines in `[signer.gks2]`.
pub fn pos_of(addr: std::net::SocketAddr, secret_file: &std::path::Path, extra: &str) -> Daemon {
    pos_with_timeout(addr, secret_file, 3000, extra)
}

/// As [`pos_of`], waiting `timeout_ms` for each of the FDM's answers.
pub fn pos_with_timeout(
    addr: std::net::SocketAddr,
    secret_file: &std::path::Path,
    timeout_ms: u64,
    extra: &str,
) -> Daemon {
    Daemon::start_dev_with_config(&format!(
        "[signer]\nbackend = \"gks2\"\n[signer.gks2]\naddress = \"{addr}\"\ndevice_id = \"{DEVICE}\"\nsecret_file = \"{}\"\npos_id = \"CFDMD0000001\"\nest_no = \"2000000042\"\ntimeout_ms = {timeout_ms}\n{extra}",
        secret_file.display()
    ))
}

/// `[signer.gks2]` lines for HTTPS trusting `ca` with the client certificate of `client`.
pub fn mtls(ca: &test_ca::TestCa, client: &test_ca::TestCa) -> String {
    format!(
        "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        ca.ca.display(),
        client.client_cert.display(),
        client.client_key.display()
    )
}
