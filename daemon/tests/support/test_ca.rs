//! A throwaway certificate authority made with the `openssl` command, for the tests that speak
//! TLS on loopback (an external Mosquitto, the GKS 2.0 FDM over HTTPS with mTLS).

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses the part it needs
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files `make` writes into its directory.
pub struct TestCa {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// A server certificate for `127.0.0.1` (subjectAltName IP) the CA signed, and its key.
    pub server_cert: PathBuf,
    /// The server certificate's key.
    pub server_key: PathBuf,
    /// A client certificate (CN `fdmd test client`) the CA signed, and its key.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key and a certificate request for `subject`, then the CA's signature on it.
fn signed(dir: &Path, name: &str, subject: &str, extensions: Option<&str>) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    );
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "2",
    ];
    let ext_file = format!("{name}.ext");
    if let Some(ext) = extensions {
        std::fs::write(dir.join(&ext_file), ext).unwrap();
        args.extend(["-extfile", &ext_file]);
    }
    openssl(dir, &args);
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate in `dir`.
pub fn make(dir: &Path) -> TestCa {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=fdmd test CA",
        ],
    );
    signed(
        dir,
        "server",
        "/CN=127.0.0.1",
        Some("subjectAltName=IP:127.0.0.1\n"),
    );
    signed(
        dir,
        "client",
        "/CN=fdmd test client",
        Some("extendedKeyUsage=clientAuth\n"),
    );
    TestCa {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}
