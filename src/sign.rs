//! The request signature, the hot path of every request.
//!
//! In: a timestamp, the API secret and the exact body bytes. Out: the 40 lowercase hex
//! digits of `sha1(ts + secret + body + secret)` and the request URL
//! `{base}/api/2/json/{login}/{ts}/{sig}`.
//!
//! The four parts are fed to one SHA-1 state, so the body is never copied into a
//! concatenation; the timestamp digits and the hex live on the stack, and the URL is
//! written into a caller-owned `String` that is reused across requests. Nothing here
//! allocates (a test with a counting allocator holds us to it). `sha1` picks the CPU's
//! SHA instructions at run time where they exist.

use sha1::{Digest, Sha1};
use std::fmt;

/// The API secret. It never prints: `Debug` and `Display` show `[redacted]`, so a
/// config dumped in a log or an error cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into().into_boxed_slice())
    }

    /// The raw bytes, for signing only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Lowercase hex of a SHA-1 digest, on the stack.
pub type Signature = [u8; 40];

/// `hex(sha1(ts + secret + body + secret))`, lowercase.
pub fn sign(ts: u64, secret: &Secret, body: &[u8]) -> Signature {
    let mut digits = itoa::Buffer::new();
    sign_raw(digits.format(ts).as_bytes(), secret.expose(), body)
}

/// The same over the timestamp as it appears in the URL (the sandbox verifies the digits
/// it was given, not a re-formatted number).
pub fn sign_raw(ts: &[u8], secret: &[u8], body: &[u8]) -> Signature {
    let mut h = Sha1::new();
    h.update(ts);
    h.update(secret);
    h.update(body);
    h.update(secret);
    let digest = h.finalize();
    let mut out = [0u8; 40];
    // Cannot fail: the output is exactly twice the digest length.
    hex::encode_to_slice(digest, &mut out).expect("40 bytes for 20");
    out
}

/// Whether `given` (hex, any case) is the signature of this request.
pub fn verify(ts: &[u8], secret: &[u8], body: &[u8], given: &[u8]) -> bool {
    let want = sign_raw(ts, secret, body);
    given.len() == want.len()
        && given
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (g, w)| acc | (g.to_ascii_lowercase() ^ w))
            == 0
}

/// Writes `{base}/api/2/json/{login}/{ts}/{sig}` into `url`, reusing its capacity.
/// `base` has no trailing slash (config strips it).
pub fn write_url(url: &mut String, base: &str, login: &str, ts: u64, sig: &Signature) {
    write_url_at(url, base, "/api/2/json/", login, ts, sig)
}

/// [`write_url`] under another API path (the Sync API's `/api/1/json/`).
pub fn write_url_at(
    url: &mut String,
    base: &str,
    path: &str,
    login: &str,
    ts: u64,
    sig: &Signature,
) {
    let mut digits = itoa::Buffer::new();
    url.clear();
    url.push_str(base);
    url.push_str(path);
    url.push_str(login);
    url.push('/');
    url.push_str(digits.format(ts));
    url.push('/');
    // The signature is ASCII hex by construction.
    url.push_str(std::str::from_utf8(sig).expect("hex is ASCII"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_vector_from_protocol() {
        let s = Secret::new("s3cr3t");
        let sig = sign(1_700_000_000, &s, br#"{"ops":[]}"#);
        assert_eq!(&sig, b"c09a76f12f8beb4943bd8eabe86ad1c9739e7e7a");
    }

    #[test]
    fn verify_accepts_any_case_and_rejects_others() {
        let body = br#"{"ops":[]}"#;
        assert!(verify(
            b"1700000000",
            b"s3cr3t",
            body,
            b"C09A76F12F8BEB4943BD8EABE86AD1C9739E7E7A"
        ));
        assert!(!verify(
            b"1700000001",
            b"s3cr3t",
            body,
            b"c09a76f12f8beb4943bd8eabe86ad1c9739e7e7a"
        ));
        assert!(!verify(b"1700000000", b"s3cr3t", body, b"c09a76"));
    }

    #[test]
    fn url_is_reused_and_complete() {
        let mut url = String::from("junk that must go");
        let sig = sign(1_700_000_000, &Secret::new("s3cr3t"), br#"{"ops":[]}"#);
        write_url(&mut url, "http://127.0.0.1:9", "1001", 1_700_000_000, &sig);
        assert_eq!(
            url,
            "http://127.0.0.1:9/api/2/json/1001/1700000000/c09a76f12f8beb4943bd8eabe86ad1c9739e7e7a"
        );
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }
}
