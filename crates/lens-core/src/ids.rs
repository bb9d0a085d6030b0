//! Content hashing and public ids. An image is known by the SHA-256 of its bytes everywhere (server,
//! browser, edge), and its public id is derived from that hash, so the same bytes get the same id
//! wherever they are ingested and copies on two sides merge.

use sha2::{Digest, Sha256};

/// Hex characters of a SHA-256.
pub const SHA256_HEX_LEN: usize = 64;
/// Hex characters of a public image id: the first 128 bits of the SHA-256.
pub const PUBLIC_ID_LEN: usize = 32;
/// Longest id a path may carry (image and job ids are far shorter); longer ones are refused unread.
pub const MAX_ID_LEN: usize = 128;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_lower(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Whether `s` is a lowercase hex SHA-256 (64 characters of `0-9a-f`).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == SHA256_HEX_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The public id of the image whose bytes hash to `sha256` (a lowercase hex SHA-256).
///
/// # Panics
/// When `sha256` is shorter than [`PUBLIC_ID_LEN`] (check it with [`is_sha256_hex`] first).
pub fn public_id(sha256: &str) -> &str {
    &sha256[..PUBLIC_ID_LEN]
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn hashes_and_ids_are_stable() {
        let sha = sha256_hex(b"abc");
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(is_sha256_hex(&sha));
        assert_eq!(public_id(&sha), "ba7816bf8f01cfea414140de5dae2223");
        assert!(!is_sha256_hex(&sha.to_uppercase()));
        assert!(!is_sha256_hex(&sha[1..]));
        assert_eq!(hex_lower(&[0, 9, 10, 255]), "00090aff");
    }
}
