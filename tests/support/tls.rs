//! Self-signed certificates made by the system's `openssl`, for TLS listeners in tests.

use std::path::Path;
use std::process::{Command, Stdio};

/// A P-256 certificate for `localhost` / 127.0.0.1 and its key, written as `NAME.crt` and
/// `NAME.key` in `dir`; returns their paths.
pub fn self_signed(dir: &Path, name: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.crt")).display().to_string();
    let key = dir.join(format!("{name}.key")).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &cert,
    ]);
    (cert, key)
}

/// A private CA with a server certificate (localhost / 127.0.0.1, also usable as a client, as
/// Redis nodes use it towards each other) and a client certificate, made by `openssl` in a
/// temporary directory that lives as long as this value.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    _dir: tempfile::TempDir,
}

impl Pki {
    /// A fresh CA and its two certificates.
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let (ca, ca_key) = (path("ca.crt"), path("ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Portico Test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ]);
        let issue = |name: &str, cn: &str, ext: &str| {
            let (cert, key, csr, extfile) = (
                path(&format!("{name}.crt")),
                path(&format!("{name}.key")),
                path(&format!("{name}.csr")),
                path(&format!("{name}.ext")),
            );
            std::fs::write(&extfile, ext).expect("write extensions");
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                &extfile,
                "-out",
                &cert,
            ]);
            (cert, key)
        };
        let (server_cert, server_key) = issue(
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        let (client_cert, client_key) = issue(
            "client",
            "portico-test-client",
            "extendedKeyUsage=clientAuth\n",
        );
        Self {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            _dir: dir,
        }
    }

    /// The `redis.tls` section trusting this CA and presenting the client certificate.
    pub fn redis_tls_yaml(&self) -> String {
        format!(
            "{{ca: \"{}\", cert: \"{}\", key: \"{}\"}}",
            self.ca, self.client_cert, self.client_key
        )
    }

    /// The redis crate's view of the same files.
    pub fn redis_certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&self.client_cert).unwrap(),
                client_key: std::fs::read(&self.client_key).unwrap(),
            }),
            root_cert: Some(std::fs::read(&self.ca).unwrap()),
        }
    }
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success(), "openssl {args:?} failed");
}
