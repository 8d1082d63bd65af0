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

    /// The configured secret, or the one kept in `data_dir/secret` (created on first use).
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Keys> {
        Ok(Keys::new(&secret(configured, data_dir)?))
    }

    /// The secret as text, for deriving other keys (the default webhook signing key).
    pub fn secret_hint(&self) -> String {
        String::from_utf8_lossy(&self.secret).into_owned()
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

fn secret(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join("secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Write to a temp file and rename so two processes starting at once agree on one secret.
    let tmp = data_dir.join(format!("secret.{}", std::process::id()));
    std::fs::write(&tmp, &hex)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {
            std::fs::remove_file(&tmp)?;
            Ok(hex.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            Ok(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn secret_is_generated_once() {
        let dir = std::env::temp_dir().join(format!("hawker-secret-{}", rand::random::<u64>()));
        let a = secret(None, &dir).unwrap();
        let b = secret(None, &dir).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
