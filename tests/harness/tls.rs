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
