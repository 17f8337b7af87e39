//! What the benches' raw HTTP/1.1 clients share: reading an answer's head.

/// Once `buf` holds a whole head: where the body starts and how many bytes it has. The
/// answer must be a 200 with a `content-length`, or the figure would count failures.
pub fn head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII headers");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("content-length");
    Some((end + 4, len))
}
