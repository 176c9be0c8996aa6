//! API-key strings: `ffk_<keyId>_<secret><checksum>` (API.md).
//!
//! `keyId` and secret are alphanumeric; the checksum is CRC-32 (IEEE) of
//! `ffk_<keyId>_<secret>` in base62 (`0-9A-Za-z`), zero-padded to 6 characters,
//! so a mistyped or made-up key is refused before any store lookup. The secret
//! is stored only as HMAC-SHA256 under a pepper derived from `FUNNELFLOW_SECRET`
//! (never the secret, never an unkeyed hash) and compared in constant time.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "ffk_";
/// Characters of a key id (≈ 95 random bits: ids never collide in practice).
pub const KEY_ID_CHARS: usize = 16;
/// Characters of the secret (≈ 190 random bits, well above the 128 required).
pub const SECRET_CHARS: usize = 32;
pub const CHECKSUM_CHARS: usize = 6;
/// Longest key string accepted for parsing (longer is refused unread).
const MAX_KEY_CHARS: usize = 200;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A key string split into its parts, checksum verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
}

/// A new key: its id and the full string handed to the client once.
pub struct NewKey {
    pub key_id: String,
    pub secret: String,
    pub full: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn random_alnum(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect()
}

/// CRC-32 (IEEE) of `body` in base62, zero-padded to 6 characters.
pub fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

/// `ffk_<keyId>` — how a key is recognised in lists (no part of the secret).
pub fn display_prefix(key_id: &str) -> String {
    format!("{PREFIX}{key_id}")
}

/// A fresh random key.
pub fn generate() -> NewKey {
    let key_id = random_alnum(KEY_ID_CHARS);
    let secret = random_alnum(SECRET_CHARS);
    let body = format!("{PREFIX}{key_id}_{secret}");
    let full = format!("{body}{}", checksum(&body));
    NewKey { key_id, secret, full }
}

/// Whether `credential` is meant as an API key (it then never goes to the ID-token verifier).
pub fn looks_like_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Splits and checks a key string; `None` when its shape or checksum is wrong.
pub fn parse(key: &str) -> Option<ParsedKey<'_>> {
    if key.len() > MAX_KEY_CHARS {
        return None;
    }
    let rest = key.strip_prefix(PREFIX)?;
    let (key_id, tail) = rest.split_once('_')?;
    if tail.len() <= CHECKSUM_CHARS || key_id.is_empty() {
        return None;
    }
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !alnum(key_id) || !alnum(tail) {
        return None;
    }
    let (secret, sum) = tail.split_at(tail.len() - CHECKSUM_CHARS);
    let body = &key[..key.len() - CHECKSUM_CHARS];
    if checksum(body).as_bytes().ct_eq(sum.as_bytes()).into() {
        Some(ParsedKey { key_id, secret })
    } else {
        None
    }
}

/// Keyed hashes of key secrets, under a pepper derived from the service secret.
#[derive(Clone)]
pub struct SecretHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

impl SecretHasher {
    pub fn new(service_secret: &str) -> Result<Self, hmac::digest::InvalidLength> {
        // Its own derived key: the service secret also signs cursors.
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(service_secret.as_bytes())?;
        derive.update(b"funnelflow/api-key-pepper/v1");
        let pepper = derive.finalize().into_bytes();
        Ok(Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&pepper)?,
        })
    }

    /// HMAC-SHA256(pepper, keyId ":" secret), hex. Binding the id means a hash
    /// copied onto another key's document matches nothing.
    pub fn hash(&self, key_id: &str, secret: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(key_id.as_bytes());
        mac.update(b":");
        mac.update(secret.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Constant-time comparison of `secret`'s hash with the stored one.
    pub fn verify(&self, key_id: &str, secret: &str, stored: &str) -> bool {
        self.hash(key_id, secret)
            .as_bytes()
            .ct_eq(stored.as_bytes())
            .into()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_mistyped_ones_do_not() {
        let k = generate();
        assert!(k.full.starts_with("ffk_"));
        assert_eq!(
            parse(&k.full),
            Some(ParsedKey {
                key_id: &k.key_id,
                secret: &k.secret
            })
        );
        // One character changed anywhere after the prefix breaks the checksum.
        for i in PREFIX.len()..k.full.len() {
            let mut b = k.full.clone().into_bytes();
            if b[i] == b'_' {
                continue;
            }
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(b).unwrap();
            assert_eq!(parse(&typo), None, "{typo}");
        }
        for bad in [
            "",
            "ffk_",
            "ffk__abc",
            "ffk_ab_c",
            "ffk_a-b_0123456789",
            "xx_ab_cdefghij",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn checksum_is_base62_crc32_zero_padded() {
        // CRC-32 of "" is 0.
        assert_eq!(checksum(""), "000000");
        // CRC-32("123456789") = 0xCBF43926 = 3421780262 = base62 "3JtqTw" (62-adic digits).
        let mut n: u64 = 0xCBF4_3926;
        let mut digits = Vec::new();
        while n > 0 {
            digits.push(BASE62[(n % 62) as usize]);
            n /= 62;
        }
        digits.reverse();
        let expect = format!("{:0>6}", String::from_utf8(digits).unwrap());
        assert_eq!(checksum("123456789"), expect);
        let made_up = format!("ffk_abc_def{}", checksum("ffk_abc_def"));
        assert!(parse(&made_up).is_some());
    }

    #[test]
    fn hashes_are_keyed_and_bound_to_the_id() {
        let h = SecretHasher::new("a-service-secret-of-some-length-xx").unwrap();
        let other = SecretHasher::new("another-service-secret-of-length-x").unwrap();
        let stored = h.hash("id1", "s3cret");
        assert!(h.verify("id1", "s3cret", &stored));
        assert!(!h.verify("id2", "s3cret", &stored));
        assert!(!h.verify("id1", "s3cres", &stored));
        assert!(!other.verify("id1", "s3cret", &stored));
        assert_eq!(stored.len(), 64);
    }
}
