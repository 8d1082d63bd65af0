//! Why a peer's DTLS handshake failed, for the log line and `hawker_dtls_failures_total{reason}`.
//!
//! str0m hands DTLS errors up as text (`RtcError::Dtls` wrapping the DTLS library's message),
//! so the reason is read from that text. Only failures that end the handshake for good are
//! classified: a peer that offers nothing hawker can use is dropped at once instead of being
//! left to the connect timeout. Anything else stays what it was (a dropped datagram).

use str0m::RtcError;

/// A DTLS handshake failure that ends the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No common cipher suite, key-exchange group or protocol version.
    Cipher,
    /// The peer's certificate type or signature is one hawker does not verify, or the
    /// signature is wrong.
    Certificate,
    /// The certificate does not match the `a=fingerprint` of the peer's SDP.
    Fingerprint,
}

impl Failure {
    /// Every reason, so each label exists (at 0) from the start.
    pub const ALL: [Failure; 3] = [Failure::Cipher, Failure::Certificate, Failure::Fingerprint];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Cipher => "cipher",
            Failure::Certificate => "certificate",
            Failure::Fingerprint => "fingerprint",
        }
    }

    /// What an operator reads in the log.
    pub fn explain(self) -> &'static str {
        match self {
            Failure::Cipher => {
                "the peer offers no usable DTLS cipher suite, key-exchange group, or version \
                 (hawker needs ECDHE_ECDSA with AES-GCM or ChaCha20-Poly1305)"
            }
            Failure::Certificate => {
                "the peer's DTLS certificate or signature is not usable (hawker verifies \
                 ECDSA P-256/P-384 and RSA PKCS#1 v1.5 with SHA-256/384)"
            }
            Failure::Fingerprint => {
                "the peer's DTLS certificate does not match the a=fingerprint of its SDP"
            }
        }
    }

    /// The failure `e` stands for, if it is one that ends the handshake.
    pub fn of(e: &RtcError) -> Option<Failure> {
        match e {
            RtcError::Dtls(d) => Failure::of_message(&d.to_string()),
            RtcError::RemoteSdp(m) if m.contains("fingerprint") => Some(Failure::Fingerprint),
            _ => None,
        }
    }

    fn of_message(m: &str) -> Option<Failure> {
        const CIPHER: &[&str] = &[
            "no mutually acceptable cipher suite",
            "no common cipher suite",
            "no common key exchange group",
            "unsupported DTLS version",
            "unsupported key exchange algorithm",
            "extended master secret not negotiated",
        ];
        const CERTIFICATE: &[&str] = &[
            "certificate error",
            "signature verification failed",
            "unsupported signature",
            "unsupported public key algorithm",
            "unsupported EC curve",
            "failed to parse certificate",
            "signature algorithm",
        ];
        let lower = m.to_ascii_lowercase();
        let has = |needles: &[&str]| {
            needles
                .iter()
                .any(|n| lower.contains(&n.to_ascii_lowercase()))
        };
        if has(CIPHER) {
            Some(Failure::Cipher)
        } else if has(CERTIFICATE) {
            Some(Failure::Certificate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::crypto::CryptoError;
    use str0m::error::DtlsError;

    fn dtls(msg: &str) -> RtcError {
        RtcError::Dtls(DtlsError::CryptoError(CryptoError::Other(format!(
            "DTLS error: {msg}"
        ))))
    }

    #[test]
    fn handshake_failures_are_classified() {
        let cases = [
            (
                "security error: no mutually acceptable cipher suite",
                Some(Failure::Cipher),
            ),
            (
                "security error: no common key exchange group",
                Some(Failure::Cipher),
            ),
            (
                "security error: unsupported DTLS version from client: Unknown(65279)",
                Some(Failure::Cipher),
            ),
            (
                "crypto error: unsupported public key algorithm",
                Some(Failure::Certificate),
            ),
            (
                "crypto error: signature verification failed: RSA + SHA256",
                Some(Failure::Certificate),
            ),
            (
                "certificate error: no client certificate received",
                Some(Failure::Certificate),
            ),
            ("receive queue full", None),
            (
                "unexpected message: pending record in unexpected epoch",
                None,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(Failure::of(&dtls(msg)), want, "{msg}");
        }
    }

    #[test]
    fn fingerprint_mismatch_is_its_own_reason() {
        let e = RtcError::RemoteSdp("remote fingerprint no match".into());
        assert_eq!(Failure::of(&e), Some(Failure::Fingerprint));
        assert_eq!(Failure::of(&RtcError::RemoteSdp("bad m-line".into())), None);
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::HashSet<_> =
            Failure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(labels.len(), Failure::ALL.len());
    }
}
