//! The token signing key (Ed25519), its public JWKS, and issuing tokens.

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD};
use chassis::auth::{ALGORITHM, Claims};
use jsonwebtoken::{
    EncodingKey, Header, encode,
    jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash},
};
use rand::Rng;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write the signing key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the signing key file {path} is open to other users (mode {mode:o}): `chmod 600` it, \
         and replace the key if anyone may have read it"
    )]
    Exposed { path: String, mode: u32 },
    #[error("the signing key is not an Ed25519 PKCS#8 PEM key: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new random Ed25519 private key as PKCS#8 PEM.
pub fn generate_pem() -> String {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend(rand::rng().random::<[u8; 32]>());
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der)
    )
}

pub struct SigningKey {
    encoding: EncodingKey,
    public: Jwk,
}

impl SigningKey {
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let encoding = EncodingKey::from_ed_pem(pem)?;
        let mut public = Jwk::from_encoding_key(&encoding, ALGORITHM)?;
        public.common.key_id = Some(public.thumbprint(ThumbprintHash::SHA256)?);
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(SigningKey { encoding, public })
    }

    /// Reads the key at `path`, which no one but its owner may read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.display().to_string(),
                mode,
            });
        }
        Self::from_pem(&std::fs::read(path).map_err(io)?)
    }

    /// Reads the key at `path`, first creating it (readable by its owner only) if there is
    /// none: how `mall up` keeps one key across restarts.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        if !path.exists() {
            let io = |source| KeyError::Io {
                path: path.display().to_string(),
                source,
            };
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            file.open(path)
                .and_then(|mut f| f.write_all(generate_pem().as_bytes()))
                .map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
        }
        Self::load(path)
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        self.public
            .common
            .key_id
            .as_deref()
            .expect("set when the key is loaded")
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public.clone()],
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.kid().to_owned());
        encode(&header, claims, &self.encoding).expect("an Ed25519 key always signs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_and_publishes_its_public_half() {
        let key = SigningKey::from_pem(generate_pem().as_bytes()).unwrap();
        let jwks = serde_json::to_value(key.jwks()).unwrap();
        let published = &jwks["keys"][0];
        assert_eq!(published["kty"], "OKP");
        assert_eq!(published["crv"], "Ed25519");
        assert_eq!(published["kid"], key.kid());
        assert!(
            published.get("d").is_none(),
            "the private part must never be published"
        );
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let first = SigningKey::load_or_generate(&path).unwrap();
        let again = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(first.kid(), again.kid());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
