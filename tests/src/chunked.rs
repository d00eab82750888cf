//! The chunked transfer coding (RFC 9112 §7.1), decoded once for what both ends of a test
//! read: the client's raw replies ([`crate::client::send_raw`]) and the requests the
//! recording upstream receives ([`crate::Upstream`]).

use std::io::{BufRead, Error, ErrorKind, Result};

/// Reads a chunked body from `source` up to and including its last chunk and trailer
/// section (trailers skipped): the body's bytes, or `InvalidData` for a chunk size that is
/// not hex and `UnexpectedEof` when it ends inside a chunk.
pub(crate) fn decode(source: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        source.read_until(b'\n', &mut line)?;
        let text = String::from_utf8_lossy(&line);
        // Chunk extensions (`;name=value`) are allowed and ignored.
        let size = text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| Error::new(ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            loop {
                let mut trailer = Vec::new();
                if source.read_until(b'\n', &mut trailer)? == 0
                    || trailer == b"\r\n"
                    || trailer == b"\n"
                {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        source.read_exact(body.get_mut(start..).unwrap_or_default())?;
        let mut crlf = Vec::new();
        source.read_until(b'\n', &mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(wire: &str) -> Result<Vec<u8>> {
        decode(&mut wire.as_bytes())
    }

    #[test]
    fn chunks_join_and_extensions_and_trailers_are_skipped() {
        let body =
            decoded("5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nnext").unwrap();
        assert_eq!(body, b"hello, world");
        assert_eq!(decoded("0\r\n\r\n").unwrap(), b"");
    }

    #[test]
    fn a_bad_size_or_a_short_chunk_is_an_error() {
        assert_eq!(
            decoded("zz\r\nhello\r\n0\r\n\r\n").unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        assert_eq!(
            decoded("a\r\nhello").unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
        assert_eq!(decoded("").unwrap_err().kind(), ErrorKind::InvalidData);
    }
}
