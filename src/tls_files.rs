//! Checks a TLS listener's certificate chain and private key before anything listens: both
//! files readable, PEM that parses, a key rustls can sign with, a key that belongs to the first
//! certificate, and a leaf certificate inside its validity period. Pingora loads the same files
//! when the listener starts and panics on the first three (its worker thread dies while the
//! process stays up), so `portico validate` and `portico run` refuse them first.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::time::{SystemTime, UNIX_EPOCH};

/// What is wrong with a certificate/key pair; each names the file at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsFileError {
    #[error("cannot read certificate {path:?}: {reason}")]
    CertUnreadable { path: String, reason: String },
    #[error("no PEM certificate in {path:?}")]
    CertMissing { path: String },
    #[error("certificate {path:?} does not parse: {reason}")]
    CertInvalid { path: String, reason: String },
    #[error("certificate {path:?} expired {days} days ago")]
    CertExpired { path: String, days: i64 },
    #[error("certificate {path:?} is not valid before {not_before} (unix time)")]
    CertNotYetValid { path: String, not_before: i64 },
    #[error("cannot read key {path:?}: {reason}")]
    KeyUnreadable { path: String, reason: String },
    #[error("no PEM private key in {path:?} (PKCS#1, PKCS#8 or SEC1 expected)")]
    KeyMissing { path: String },
    #[error("key {path:?} is not usable: {reason}")]
    KeyInvalid { path: String, reason: String },
    #[error("key {key:?} does not belong to certificate {cert:?}")]
    Mismatch { cert: String, key: String },
}

impl TlsFileError {
    /// Whether the fault lies in the key file (so a located error can point at `key:`).
    pub fn is_about_key(&self) -> bool {
        matches!(
            self,
            Self::KeyUnreadable { .. }
                | Self::KeyMissing { .. }
                | Self::KeyInvalid { .. }
                | Self::Mismatch { .. }
        )
    }
}

/// Loads and checks `cert_path` and `key_path` as a listener would, at time `now`.
pub fn check_pair(cert_path: &str, key_path: &str, now: SystemTime) -> Result<(), TlsFileError> {
    let cert_pem = std::fs::read(cert_path).map_err(|e| TlsFileError::CertUnreadable {
        path: cert_path.into(),
        reason: e.to_string(),
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsFileError::CertInvalid {
            path: cert_path.into(),
            reason: e.to_string(),
        })?;
    let leaf = certs.first().ok_or_else(|| TlsFileError::CertMissing {
        path: cert_path.into(),
    })?;
    check_validity(cert_path, leaf, now)?;

    let key_pem = std::fs::read(key_path).map_err(|e| TlsFileError::KeyUnreadable {
        path: key_path.into(),
        reason: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsFileError::KeyMissing {
            path: key_path.into(),
        },
        other => TlsFileError::KeyInvalid {
            path: key_path.into(),
            reason: other.to_string(),
        },
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        TlsFileError::KeyInvalid {
            path: key_path.into(),
            reason: e.to_string(),
        }
    })?;
    rustls::sign::CertifiedKey::new(certs, signer)
        .keys_match()
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsFileError::Mismatch {
                cert: cert_path.into(),
                key: key_path.into(),
            },
            other => TlsFileError::KeyInvalid {
                path: key_path.into(),
                reason: other.to_string(),
            },
        })
}

/// When the leaf certificate of `cert_path` expires (notAfter, Unix seconds); `None` when the
/// file cannot be read or parsed (the compile step reports that).
pub fn not_after(cert_path: &str) -> Option<i64> {
    let pem = std::fs::read(cert_path).ok()?;
    let leaf = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn check_validity(
    path: &str,
    leaf: &CertificateDer<'_>,
    now: SystemTime,
) -> Result<(), TlsFileError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        TlsFileError::CertInvalid {
            path: path.into(),
            reason: e.to_string(),
        }
    })?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = cert.validity();
    let not_after = validity.not_after.timestamp();
    if now > not_after {
        return Err(TlsFileError::CertExpired {
            path: path.into(),
            days: (now - not_after) / 86_400,
        });
    }
    let not_before = validity.not_before.timestamp();
    if now < not_before {
        return Err(TlsFileError::CertNotYetValid {
            path: path.into(),
            not_before,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    /// A self-signed pair made by the system's `openssl`, as operators make them.
    fn pair(dir: &std::path::Path, name: &str) -> (String, String) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(status.status.success(), "{status:?}");
        (
            cert.to_string_lossy().into_owned(),
            key.to_string_lossy().into_owned(),
        )
    }

    #[test]
    fn a_matching_pair_in_its_validity_period_passes() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        assert_eq!(check_pair(&cert, &key, SystemTime::now()), Ok(()));
    }

    #[test]
    fn a_key_from_another_pair_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        let err = check_pair(&cert, &other_key, SystemTime::now()).unwrap_err();
        assert!(matches!(err, TlsFileError::Mismatch { .. }), "{err}");
        assert!(err.is_about_key());
    }

    #[test]
    fn expiry_is_judged_against_the_given_time() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let later = SystemTime::now() + Duration::from_secs(5 * 86_400);
        let err = check_pair(&cert, &key, later).unwrap_err();
        assert!(
            matches!(err, TlsFileError::CertExpired { days: 2..=3, .. }),
            "{err}"
        );
        let earlier = SystemTime::now() - Duration::from_secs(86_400);
        assert!(matches!(
            check_pair(&cert, &key, earlier),
            Err(TlsFileError::CertNotYetValid { .. })
        ));
    }

    #[test]
    fn unreadable_and_unparsable_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let missing = dir.path().join("none.pem").to_string_lossy().into_owned();
        assert!(matches!(
            check_pair(&missing, &key, SystemTime::now()),
            Err(TlsFileError::CertUnreadable { .. })
        ));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem file\n").unwrap();
        let junk = junk.to_string_lossy().into_owned();
        assert!(matches!(
            check_pair(&junk, &key, SystemTime::now()),
            Err(TlsFileError::CertMissing { .. })
        ));
        let err = check_pair(&cert, &junk, SystemTime::now()).unwrap_err();
        assert!(matches!(err, TlsFileError::KeyMissing { .. }), "{err}");
        assert!(err.to_string().contains("junk.pem"));
        // A certificate where the key should be is no key either.
        assert!(check_pair(&cert, &cert, SystemTime::now()).is_err());
    }
}
