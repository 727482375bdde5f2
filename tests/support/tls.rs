//! Self-signed certificates made by the system's `openssl`, for TLS listeners in tests.

use std::path::Path;
use std::process::{Command, Stdio};

/// A P-256 certificate for `localhost` / 127.0.0.1 and its key, written as `NAME.crt` and
/// `NAME.key` in `dir`; returns their paths.
pub fn self_signed(dir: &Path, name: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.crt")).display().to_string();
    let key = dir.join(format!("{name}.key")).display().to_string();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-keyout", &key, "-out", &cert])
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}
