//! Certificates made at test time: a private CA and a server certificate it signed for
//! `localhost` and `127.0.0.1` (or names of the test's choosing), written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};

/// The PEM files of a test CA and of a server certificate it issued.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA certificate: trust it to verify the server, leave it out to see verification fail.
    pub ca_pem: PathBuf,
    /// The server certificate (subject alternative names `localhost` and IP `127.0.0.1`, or
    /// those given to [`TestCertificates::generate_for`]).
    pub cert_pem: PathBuf,
    /// The server's private key (PKCS#8).
    pub key_pem: PathBuf,
    /// The CA certificate, DER (what a DANE-TA `2 0 x` record is made from).
    pub ca_der: Vec<u8>,
    /// The CA's SubjectPublicKeyInfo, DER (for `2 1 x`).
    pub ca_spki_der: Vec<u8>,
    /// The server certificate, DER (for DANE-EE `3 0 x`).
    pub cert_der: Vec<u8>,
    /// The server key's SubjectPublicKeyInfo, DER (for `3 1 x`).
    pub spki_der: Vec<u8>,
}

impl TestCertificates {
    /// Generates a fresh CA and server certificate and writes `ca.pem`, `cert.pem` and
    /// `key.pem` into `dir`.
    pub fn generate(dir: &Path) -> TestCertificates {
        Self::generate_for(dir, &["localhost", "127.0.0.1"])
    }

    /// Like [`TestCertificates::generate`], with a server certificate for `names` (the first
    /// is also its common name).
    pub fn generate_for(dir: &Path, names: &[&str]) -> TestCertificates {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferrymail test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("generate the test CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign the test CA");

        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().map_or("", String::as_str));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generate the server key");
        let cert = params
            .signed_by(&key, &ca)
            .expect("sign the server certificate");

        let certificates = TestCertificates {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("cert.pem"),
            key_pem: dir.join("key.pem"),
            ca_der: ca.der().to_vec(),
            ca_spki_der: ca.key().subject_public_key_info(),
            cert_der: cert.der().to_vec(),
            spki_der: key.subject_public_key_info(),
        };
        std::fs::write(&certificates.ca_pem, ca.pem()).unwrap();
        std::fs::write(&certificates.cert_pem, cert.pem()).unwrap();
        std::fs::write(&certificates.key_pem, key.serialize_pem()).unwrap();
        certificates
    }
}

/// The domain of role names the tests' cluster certificates use (`cluster.tls.domain`'s
/// default).
pub const CLUSTER_DOMAIN: &str = "ferrymail.internal";

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate.
    pub cert_pem: PathBuf,
    /// Its private key.
    pub key_pem: PathBuf,
}

/// A test cluster's CA, and the role certificates it issues (each usable by a server and by
/// a client, as a role's certificate is).
pub struct ClusterCertificates {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate.
    pub ca_pem: PathBuf,
}

impl ClusterCertificates {
    /// A new CA, named `name`, writing its files into `dir`.
    pub fn generate(dir: &Path, name: &str) -> ClusterCertificates {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate the cluster CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("self-sign the cluster CA");
        let ca_pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        ClusterCertificates {
            dir: dir.to_path_buf(),
            ca,
            ca_pem,
        }
    }

    /// The certificate of `roles` (`<role>.ferrymail.internal` each), valid now.
    pub fn role(&self, roles: &[&str]) -> IssuedCertificate {
        let names: Vec<String> = roles
            .iter()
            .map(|role| format!("{role}.{CLUSTER_DOMAIN}"))
            .collect();
        let now = time::OffsetDateTime::now_utc();
        self.issue(
            &roles.join("+"),
            &names,
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        )
    }

    /// A certificate for the DNS `names`, valid from `not_before` to `not_after`, written as
    /// `<file>.pem` and `<file>-key.pem`.
    pub fn issue(
        &self,
        file: &str,
        names: &[String],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> IssuedCertificate {
        let mut params = CertificateParams::new(names.to_vec()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or(file, String::as_str),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("generate a role key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("sign a role certificate");
        let issued = IssuedCertificate {
            cert_pem: self.dir.join(format!("{file}.pem")),
            key_pem: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&issued.cert_pem, cert.pem()).unwrap();
        std::fs::write(&issued.key_pem, key.serialize_pem()).unwrap();
        issued
    }

    /// The `[cluster.tls]` table of a process holding `identity`.
    pub fn config(&self, identity: &IssuedCertificate) -> String {
        format!(
            "[cluster.tls]\ncertificate = \"%{{file:{}}}%\"\nprivate-key = \"%{{file:{}}}%\"\nca = \"%{{file:{}}}%\"\n",
            identity.cert_pem.display(),
            identity.key_pem.display(),
            self.ca_pem.display()
        )
    }
}
