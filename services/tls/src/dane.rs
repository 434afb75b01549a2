//! DANE certificate verification for SMTP (RFC 7672 §3): the server's certificate is
//! checked against the host's DNSSEC-secure TLSA records instead of the public CAs.
//!
//! - DANE-EE (usage 3): the end-entity certificate (selector 0) or its public key
//!   (selector 1) matches the record; no name, expiry or chain checks (RFC 7672 §3.1.1).
//! - DANE-TA (usage 2): a certificate the server presents in its chain matches the record;
//!   the end-entity certificate must chain to it and carry one of the reference names (the
//!   MX host name, RFC 7672 §3.2.2), checked as for PKIX with the matched certificate as the
//!   only trust anchor.
//! - PKIX-TA and PKIX-EE (usages 0 and 1) and unknown values are unusable in SMTP (RFC 7672
//!   §3.1.3): [`Tlsa::usable`] drops them, and a host whose records are all unusable has no
//!   DANE policy.
//!
//! Matching types 0 (exact), 1 (SHA-256) and 2 (SHA-512) are supported.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256, Sha512};

/// Certificate usages that are usable in SMTP (RFC 7672 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// DANE-TA (2): a trust anchor in the server's chain.
    TrustAnchor,
    /// DANE-EE (3): the server's own certificate or key.
    EndEntity,
}

/// Which part of a certificate a record matches (RFC 6698 §2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// 0: the whole certificate (DER).
    Certificate,
    /// 1: its SubjectPublicKeyInfo (DER).
    PublicKey,
}

/// How the selected part is compared (RFC 6698 §2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    /// 0: byte for byte.
    Exact,
    /// 1: its SHA-256 digest.
    Sha256,
    /// 2: its SHA-512 digest.
    Sha512,
}

/// A TLSA record usable for SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage.
    pub usage: Usage,
    /// Selector.
    pub selector: Selector,
    /// Matching type.
    pub matching: Matching,
    /// Certificate association data.
    pub data: Vec<u8>,
}

impl Tlsa {
    /// The record with these fields if SMTP can use it: `None` for PKIX usages (0, 1) and
    /// for unknown usages, selectors or matching types (RFC 7672 §3.1.3).
    pub fn usable(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Option<Self> {
        let usage = match usage {
            2 => Usage::TrustAnchor,
            3 => Usage::EndEntity,
            _ => return None,
        };
        let selector = match selector {
            0 => Selector::Certificate,
            1 => Selector::PublicKey,
            _ => return None,
        };
        let matching = match matching {
            0 => Matching::Exact,
            1 => Matching::Sha256,
            2 => Matching::Sha512,
            _ => return None,
        };
        Some(Self {
            usage,
            selector,
            matching,
            data,
        })
    }

    /// Whether `certificate` matches this record's selector, matching type and data. A
    /// certificate that does not parse (for selector 1) matches nothing.
    pub fn matches(&self, certificate: &CertificateDer<'_>) -> bool {
        let selected = match self.selector {
            Selector::Certificate => certificate.as_ref().to_vec(),
            Selector::PublicKey => match public_key_info(certificate) {
                Some(spki) => spki,
                None => return false,
            },
        };
        match self.matching {
            Matching::Exact => selected == self.data,
            Matching::Sha256 => Sha256::digest(&selected).as_slice() == self.data.as_slice(),
            Matching::Sha512 => Sha512::digest(&selected).as_slice() == self.data.as_slice(),
        }
    }
}

/// The DER SubjectPublicKeyInfo of `certificate`.
fn public_key_info(certificate: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    Some(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

/// What a DANE connection to one host must satisfy: its usable TLSA records (at least one)
/// and the names a DANE-TA chain may be issued for (the MX host name first, which is also
/// sent as SNI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanePolicy {
    records: Vec<Tlsa>,
    names: Vec<String>,
}

impl DanePolicy {
    /// The policy of `records` for a host known by `names`; `None` when there is no record
    /// or no name, since such a policy could never be met.
    pub fn new(records: Vec<Tlsa>, names: Vec<String>) -> Option<Self> {
        (!records.is_empty() && !names.is_empty()).then_some(Self { records, names })
    }

    /// The records.
    pub fn records(&self) -> &[Tlsa] {
        &self.records
    }

    /// The host name the connection is for (the first reference name).
    pub fn host(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }

    /// Whether the chain the server presented (`end_entity` first) satisfies a record at
    /// `now`; `Err` says why not.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(), DaneMismatch> {
        let end_entity_match = self
            .records
            .iter()
            .any(|r| r.usage == Usage::EndEntity && r.matches(end_entity));
        if end_entity_match {
            return Ok(());
        }
        let anchors = intermediates.iter().filter(|certificate| {
            self.records
                .iter()
                .any(|r| r.usage == Usage::TrustAnchor && r.matches(certificate))
        });
        let mut reason = DaneMismatch::NoMatch;
        for anchor in anchors {
            match self.chains_to(anchor, end_entity, intermediates, now, provider) {
                Ok(()) => return Ok(()),
                Err(error) => reason = DaneMismatch::Chain(error),
            }
        }
        Err(reason)
    }

    /// Whether `end_entity` chains to `anchor` and is valid for one of the reference names.
    fn chains_to(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(), String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(anchor.clone().into_owned())
            .map_err(|e| format!("the matched trust anchor is unusable: {e}"))?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        let mut last = String::from("no reference name");
        for name in &self.names {
            let Ok(server_name) = ServerName::try_from(name.as_str()) else {
                continue;
            };
            match verifier.verify_server_cert(end_entity, intermediates, &server_name, &[], now) {
                Ok(_) => return Ok(()),
                Err(error) => last = error.to_string(),
            }
        }
        Err(last)
    }
}

/// Why a server's chain does not satisfy its DANE policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaneMismatch {
    /// No certificate the server presented matches a TLSA record.
    #[error("DANE: the server's certificate matches none of its TLSA records")]
    NoMatch,
    /// A chain certificate matches a DANE-TA record, but the end-entity certificate does
    /// not chain to it validly for the host's name.
    #[error("DANE: the certificate does not verify under the TLSA trust anchor: {0}")]
    Chain(String),
}

/// The certificate verifier of one DANE connection.
#[derive(Debug)]
pub(crate) struct DaneVerifier {
    policy: DanePolicy,
    provider: Arc<CryptoProvider>,
}

impl DaneVerifier {
    pub(crate) fn new(policy: DanePolicy, provider: Arc<CryptoProvider>) -> Self {
        Self { policy, provider }
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.policy
            .verify(end_entity, intermediates, now, &self.provider)
            .map(|()| ServerCertVerified::assertion())
            .map_err(|mismatch| rustls::Error::Other(OtherError(Arc::new(mismatch))))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PublicKeyData,
    };

    use super::*;

    /// A CA and a leaf it issued for `mx.example.net`: (CA DER, CA SPKI, leaf DER, leaf SPKI).
    fn chain() -> (
        CertificateDer<'static>,
        Vec<u8>,
        CertificateDer<'static>,
        Vec<u8>,
    ) {
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let ca_spki = ca_key.subject_public_key_info();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap_or_else(|e| panic!("{e}"));
        let params = CertificateParams::new(vec!["mx.example.net".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let leaf = params
            .signed_by(&key, &ca)
            .unwrap_or_else(|e| panic!("{e}"));
        (
            ca.der().clone(),
            ca_spki,
            leaf.der().clone(),
            key.subject_public_key_info(),
        )
    }

    fn record(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa::usable(usage, selector, matching, data).unwrap_or_else(|| panic!("unusable"))
    }

    fn policy(records: Vec<Tlsa>, name: &str) -> DanePolicy {
        DanePolicy::new(records, vec![name.to_owned()]).unwrap_or_else(|| panic!("no policy"))
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    #[test]
    fn only_dane_usages_with_known_fields_are_usable() {
        assert_eq!(Tlsa::usable(0, 0, 1, vec![1]), None, "PKIX-TA");
        assert_eq!(Tlsa::usable(1, 1, 1, vec![1]), None, "PKIX-EE");
        assert_eq!(Tlsa::usable(4, 1, 1, vec![1]), None, "unassigned usage");
        assert_eq!(Tlsa::usable(255, 1, 1, vec![1]), None, "private usage");
        assert_eq!(Tlsa::usable(3, 2, 1, vec![1]), None, "unknown selector");
        assert_eq!(
            Tlsa::usable(3, 1, 3, vec![1]),
            None,
            "unknown matching type"
        );
        let ee = Tlsa::usable(3, 1, 1, vec![1]);
        assert_eq!(
            ee.map(|t| (t.usage, t.selector, t.matching)),
            Some((Usage::EndEntity, Selector::PublicKey, Matching::Sha256))
        );
        let ta = Tlsa::usable(2, 0, 2, vec![]);
        assert_eq!(
            ta.map(|t| (t.usage, t.selector, t.matching)),
            Some((Usage::TrustAnchor, Selector::Certificate, Matching::Sha512))
        );
    }

    #[test]
    fn records_match_the_selected_part_by_the_matching_type() {
        let (_, _, leaf, spki) = chain();
        let matching = [
            record(3, 0, 0, leaf.to_vec()),
            record(3, 0, 1, Sha256::digest(&leaf).to_vec()),
            record(3, 0, 2, Sha512::digest(&leaf).to_vec()),
            record(3, 1, 0, spki.clone()),
            record(3, 1, 1, Sha256::digest(&spki).to_vec()),
            record(3, 1, 2, Sha512::digest(&spki).to_vec()),
        ];
        for tlsa in &matching {
            assert!(tlsa.matches(&leaf), "{tlsa:?}");
        }
        let mismatching = [
            record(3, 0, 1, Sha256::digest(&spki).to_vec()),
            record(3, 1, 1, Sha256::digest(&leaf).to_vec()),
            record(3, 1, 1, Sha256::digest(&spki)[..20].to_vec()),
            record(3, 1, 2, Sha256::digest(&spki).to_vec()),
            record(3, 0, 0, Vec::new()),
        ];
        for tlsa in &mismatching {
            assert!(!tlsa.matches(&leaf), "{tlsa:?}");
        }
    }

    #[test]
    fn a_certificate_that_does_not_parse_matches_no_key_record() {
        let garbage = CertificateDer::from(b"not a certificate".to_vec());
        let tlsa = record(3, 1, 0, b"not a certificate".to_vec());
        assert!(!tlsa.matches(&garbage));
        let empty = CertificateDer::from(Vec::new());
        assert!(!record(3, 1, 1, vec![0; 32]).matches(&empty));
    }

    #[test]
    fn dane_ee_ignores_names_and_chains() {
        let (_, _, leaf, spki) = chain();
        let dane = policy(
            vec![record(3, 1, 1, Sha256::digest(&spki).to_vec())],
            "elsewhere.test",
        );
        assert_eq!(
            dane.verify(&leaf, &[], UnixTime::now(), &provider()),
            Ok(())
        );
    }

    #[test]
    fn dane_ta_needs_the_anchor_in_the_chain_and_the_host_name() {
        let (ca, ca_spki, leaf, _) = chain();
        let by_cert = record(2, 0, 1, Sha256::digest(&ca).to_vec());
        let by_key = record(2, 1, 1, Sha256::digest(&ca_spki).to_vec());
        let now = UnixTime::now();
        for tlsa in [by_cert, by_key] {
            let good = policy(vec![tlsa.clone()], "mx.example.net");
            assert_eq!(
                good.verify(&leaf, std::slice::from_ref(&ca), now, &provider()),
                Ok(())
            );
            // The anchor must be presented by the server.
            assert_eq!(
                good.verify(&leaf, &[], now, &provider()),
                Err(DaneMismatch::NoMatch)
            );
            let wrong_name = policy(vec![tlsa], "other.example.net");
            let result = wrong_name.verify(&leaf, std::slice::from_ref(&ca), now, &provider());
            assert!(matches!(result, Err(DaneMismatch::Chain(_))), "{result:?}");
        }
        // A DANE-TA record does not match the leaf itself.
        let leaf_as_anchor = policy(vec![record(2, 0, 0, leaf.to_vec())], "mx.example.net");
        assert_eq!(
            leaf_as_anchor.verify(&leaf, std::slice::from_ref(&ca), now, &provider()),
            Err(DaneMismatch::NoMatch)
        );
    }

    #[test]
    fn a_policy_needs_records_and_a_name() {
        let tlsa = record(3, 1, 1, vec![0; 32]);
        assert!(DanePolicy::new(Vec::new(), vec!["mx.example.net".into()]).is_none());
        assert!(DanePolicy::new(vec![tlsa.clone()], Vec::new()).is_none());
        let dane = policy(vec![tlsa], "mx.example.net");
        assert_eq!(dane.host(), "mx.example.net");
        assert_eq!(dane.records().len(), 1);
    }
}
