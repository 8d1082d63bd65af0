//! Tokens: HS256 JWTs with a role scoped to one show.
//!
//! Claims: `sub` (who), `show` (the show id, or `*` for any show — admin only), `role`
//! (`publisher`, `viewer`, `admin`), `iat`, `exp`. The secret comes from the config or is
//! generated once and kept in `{data_dir}/secret`, so `hawker token` and `hawker serve`
//! started from the same directory agree.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Publishes a show's media (WHIP) and acts as its seller on the events channel.
    Publisher,
    /// Watches a show (WHEP) and buys.
    Viewer,
    /// Manages shows, catalog and orders via the REST API; may also publish or watch.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "publisher" => Ok(Role::Publisher),
            "viewer" => Ok(Role::Viewer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (publisher, viewer or admin)"
            )),
        }
    }
}

/// The JWT claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user id; viewers' orders are keyed by it.
    pub sub: String,
    /// Show id, or `*` for every show.
    pub show: String,
    /// Role.
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

impl Claims {
    /// Whether these claims cover `show`.
    pub fn covers(&self, show: &str) -> bool {
        self.show == "*" || self.show == show
    }
}

/// Why a token was refused. `Missing`/`Invalid`/`Expired` map to 401, `Forbidden` to 403.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Bad signature or malformed token.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Valid token, wrong role or show.
    #[error("{0}")]
    Forbidden(String),
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct Keys {
    secret: Vec<u8>,
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Keys from a secret.
    pub fn new(secret: &[u8]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Keys {
            secret: secret.to_vec(),
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Keys from the configured secret, or the one kept in `data_dir/secret` (created on first
    /// use); see [`load_secret`]. Refuses secrets shorter than [`MIN_SECRET_BYTES`].
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<Keys, SecretError> {
        Ok(Keys::new(&load_secret(configured, data_dir)?.bytes))
    }

    /// The default webhook signing key, derived from (never equal to) the token secret.
    pub fn webhook_secret(&self) -> String {
        derive_webhook_secret(&self.secret)
    }

    /// A server-signed anonymous viewer id: `<id>.<tag>`, where `tag` is the first 16 bytes (hex)
    /// of HMAC-SHA256(secret, `"hawker anon viewer v1:" + id`). The server hands one to each
    /// anonymous viewer; presenting it again keeps the viewer's buys idempotent across
    /// reconnects, and nobody without the secret can make one for an id of their choosing.
    pub fn sign_anon_viewer(&self, id: &str) -> String {
        format!("{id}.{}", hex::encode(anon_tag(&self.secret, id)))
    }

    /// The id inside a signed anonymous viewer id, if this server signed it.
    pub fn verify_anon_viewer<'a>(&self, signed: &'a str) -> Option<&'a str> {
        use hmac::{Hmac, Mac};
        let (id, tag) = signed.rsplit_once('.')?;
        if id.is_empty() || id.len() > 64 || tag.len() != 32 {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(ANON_CONTEXT);
        mac.update(id.as_bytes());
        // Constant time over the truncated tag.
        mac.verify_truncated_left(&tag).ok()?;
        Some(id)
    }

    /// Sign a token.
    pub fn issue(&self, sub: &str, show: &str, role: Role, ttl: Duration) -> String {
        let iat = now_secs();
        let claims = Claims {
            sub: sub.to_string(),
            show: show.to_string(),
            role,
            iat,
            exp: iat + ttl.as_secs().max(1),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verify a token's signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Error::Expired,
                _ => Error::Invalid(e.to_string()),
            })
    }

    /// Verify an optional `Authorization` header value for `show`, requiring one of `roles`.
    pub fn authorize(
        &self,
        header: Option<&str>,
        show: &str,
        roles: &[Role],
    ) -> Result<Claims, Error> {
        let token = bearer(header).ok_or(Error::Missing)?;
        let claims = self.verify(token)?;
        if !roles.contains(&claims.role) {
            return Err(Error::Forbidden(format!(
                "role {:?} may not do this (needs {:?})",
                claims.role, roles
            )));
        }
        if !claims.covers(show) {
            return Err(Error::Forbidden(format!(
                "token is for show {:?}, not {show:?}",
                claims.show
            )));
        }
        Ok(claims)
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: a key of at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why the token secret could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The configured or stored secret is too short to resist brute force.
    #[error("{origin} is {len} bytes; an HS256 secret must be at least {min} bytes (e.g. `openssl rand -hex 32`)", min = MIN_SECRET_BYTES)]
    TooShort {
        /// Where it came from (`auth.secret` or the file path).
        origin: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Reading or writing `{data_dir}/secret` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The token secret and whether this call generated it (a first start).
#[derive(Debug)]
pub struct Secret {
    /// The HS256 key bytes.
    pub bytes: Vec<u8>,
    /// True when the secret file was created by this call.
    pub created: bool,
}

fn check_len(origin: String, bytes: &[u8]) -> Result<(), SecretError> {
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort {
            origin,
            len: bytes.len(),
        });
    }
    Ok(())
}

/// The configured secret, or the one kept in `data_dir/secret`, generated on first use.
///
/// The generated file is written under a temporary name opened with `create_new` (mode 0600),
/// fsynced, then hard-linked into place, and the directory is fsynced: a crash never leaves a
/// short or empty secret behind, and two processes starting at once agree on one secret. The
/// data directory is created with mode 0700.
pub fn load_secret(configured: Option<&str>, data_dir: &Path) -> Result<Secret, SecretError> {
    if let Some(s) = configured {
        check_len("auth.secret".into(), s.as_bytes())?;
        return Ok(Secret {
            bytes: s.as_bytes().to_vec(),
            created: false,
        });
    }
    let path = data_dir.join("secret");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SecretError::Io { path, source }
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim();
            check_len(path.display().to_string(), s.as_bytes())?;
            return Ok(Secret {
                bytes: s.as_bytes().to_vec(),
                created: false,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    create_private_dir(data_dir).map_err(io(data_dir))?;
    let bytes: [u8; 32] = rand::random();
    let hex = hex::encode(bytes);
    let tmp = data_dir.join(format!(
        "secret.tmp.{}.{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    write_new_private(&tmp, hex.as_bytes()).map_err(io(&tmp))?;
    #[cfg(feature = "fault-injection")]
    crate::fault::pause_point("secret-written", data_dir, false);
    let linked = std::fs::hard_link(&tmp, &path);
    #[cfg(feature = "fault-injection")]
    crate::fault::pause_point("secret-linked", data_dir, false);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(data_dir).map_err(io(data_dir))?;
            Ok(Secret {
                bytes: hex.into_bytes(),
                created: true,
            })
        }
        // Another process won the race: use its secret.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let s = std::fs::read_to_string(&path).map_err(io(&path))?;
            let s = s.trim();
            check_len(path.display().to_string(), s.as_bytes())?;
            Ok(Secret {
                bytes: s.as_bytes().to_vec(),
                created: false,
            })
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Create `dir` (and parents) with mode 0700 for the last component.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

const ANON_CONTEXT: &[u8] = b"hawker anon viewer v1:";

fn anon_tag(secret: &[u8], id: &str) -> [u8; 16] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(ANON_CONTEXT);
    mac.update(id.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&full[..16]);
    tag
}

/// The webhook signing key derived from the token secret when `commerce.webhook_secret` is
/// unset: the lower-case hex of HMAC-SHA256(token secret, `"hawker webhook v1"`), used as the
/// UTF-8 bytes of that hex text. A receiver holding it cannot mint tokens; `hawker
/// webhook-secret` prints it.
pub fn derive_webhook_secret(token_secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(token_secret).expect("HMAC takes any key length");
    mac.update(b"hawker webhook v1");
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_ids_are_signed() {
        let k = Keys::new(b"test-secret-0123456789abcdef-0123456789");
        let s = k.sign_anon_viewer("3f9a0c1d2e4b");
        assert_eq!(k.verify_anon_viewer(&s), Some("3f9a0c1d2e4b"));
        let other = Keys::new(b"another-secret-0123456789abcdef-012345");
        assert_eq!(other.verify_anon_viewer(&s), None, "other key");
        let (id, tag) = s.split_once('.').unwrap();
        for forged in [
            "3f9a0c1d2e4b".to_string(),
            format!("3f9a0c1d2e4c.{tag}"),
            format!("{id}.{}", "0".repeat(32)),
            format!("{id}.{}", &tag[..30]),
            format!(".{tag}"),
        ] {
            assert_eq!(k.verify_anon_viewer(&forged), None, "{forged}");
        }
    }

    #[test]
    fn roundtrip_and_scope() {
        let k = Keys::new(b"test-secret");
        let t = k.issue("alice", "show1", Role::Publisher, Duration::from_secs(60));
        let c = k
            .authorize(Some(&format!("Bearer {t}")), "show1", &[Role::Publisher])
            .unwrap();
        assert_eq!(c.sub, "alice");
        assert!(matches!(
            k.authorize(Some(&format!("Bearer {t}")), "show2", &[Role::Publisher]),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            k.authorize(Some(&format!("Bearer {t}")), "show1", &[Role::Viewer]),
            Err(Error::Forbidden(_))
        ));
        assert_eq!(
            k.authorize(None, "show1", &[Role::Viewer]),
            Err(Error::Missing)
        );
    }

    #[test]
    fn wrong_secret_and_expired_are_refused() {
        let k = Keys::new(b"a");
        let other = Keys::new(b"b");
        let t = other.issue("x", "s", Role::Viewer, Duration::from_secs(60));
        assert!(matches!(k.verify(&t), Err(Error::Invalid(_))));
        let claims = Claims {
            sub: "x".into(),
            show: "s".into(),
            role: Role::Viewer,
            iat: 1,
            exp: 2,
        };
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.enc).unwrap();
        assert_eq!(k.verify(&old), Err(Error::Expired));
    }

    fn temp_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("hawker-secret-{}", rand::random::<u64>()))
    }

    #[test]
    fn secret_is_generated_once_private_and_durable() {
        let dir = temp_dir().join("data");
        let a = load_secret(None, &dir).unwrap();
        assert!(a.created);
        let b = load_secret(None, &dir).unwrap();
        assert!(!b.created);
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.bytes.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.join("secret")), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"]);
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn short_or_empty_secrets_are_refused() {
        for bad in ["", "change-me", &"x".repeat(MIN_SECRET_BYTES - 1)] {
            let err = load_secret(Some(bad), Path::new("/nonexistent")).unwrap_err();
            assert!(
                matches!(err, SecretError::TooShort { .. })
                    && err.to_string().contains("auth.secret"),
                "{bad:?}: {err}"
            );
        }
        assert!(load_secret(
            Some(&"x".repeat(MIN_SECRET_BYTES)),
            Path::new("/nonexistent")
        )
        .is_ok());
        // A stored secret that is empty or short (truncated, hand-edited) is refused too, never
        // silently replaced or used.
        for stored in ["", "\n", "abc"] {
            let dir = temp_dir();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("secret"), stored).unwrap();
            let err = load_secret(None, &dir).unwrap_err();
            assert!(err.to_string().contains("secret"), "{err}");
            assert!(
                matches!(err, SecretError::TooShort { .. }),
                "{stored:?}: {err}"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn webhook_key_is_not_the_token_secret() {
        let secret = "s".repeat(40);
        let k = Keys::new(secret.as_bytes());
        let w = k.webhook_secret();
        assert_ne!(w.as_bytes(), secret.as_bytes());
        assert_eq!(w, derive_webhook_secret(secret.as_bytes()));
        assert_eq!(w.len(), 64);
        // A token signed with the webhook key is not accepted.
        let forged = Keys::new(w.as_bytes()).issue("x", "*", Role::Admin, Duration::from_secs(60));
        assert!(k.verify(&forged).is_err());
    }
}
