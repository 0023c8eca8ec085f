//! Netstrings (`LEN:DATA,`), the framing of request bodies and of the
//! connection-id list in replies. A netstring is a tnetstring whose type tag
//! is `,`, so lengths follow the same 1-9 digit rule.

use super::codec::CodecError;
use super::tnetstring::{self, TnetError};

/// Returns `LEN:DATA,`.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    write(&mut out, data);
    out
}

/// Appends `LEN:DATA,` to `out`.
pub fn write(out: &mut Vec<u8>, data: &[u8]) {
    tnetstring::put_raw(out, data, b',');
}

/// Parses the netstring at `buf[start]`; returns its payload and the offset
/// just past its closing `,`. Error offsets are offsets into `buf`; `what`
/// names the field in error messages.
pub fn parse_at<'a>(
    buf: &'a [u8],
    start: usize,
    what: &'static str,
) -> Result<(&'a [u8], usize), CodecError> {
    let (range, tag, end) = tnetstring::frame(buf, start).map_err(|e| match e {
        TnetError::BadLength { offset } => CodecError::BadLength { what, offset },
        TnetError::Truncated {
            offset,
            declared,
            available,
        } => CodecError::Truncated {
            what,
            offset,
            declared,
            available,
        },
        TnetError::MissingTag { offset } => CodecError::Expected {
            expected: "',' ending the netstring",
            offset,
        },
        other => CodecError::Tnetstring(other),
    })?;
    if tag != b',' {
        return Err(CodecError::Expected {
            expected: "',' ending the netstring",
            offset: range.end,
        });
    }
    Ok((&buf[range], end))
}

/// Parses `data`, which must start with a netstring; returns its payload and
/// the rest of `data`.
pub fn parse(data: &[u8]) -> Result<(&[u8], &[u8]), CodecError> {
    let (payload, end) = parse_at(data, 0, "netstring")?;
    Ok((payload, &data[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_parse() {
        assert_eq!(encode(b"abc"), b"3:abc,");
        assert_eq!(encode(b""), b"0:,");
        assert_eq!(parse(b"3:abc,rest").unwrap(), (&b"abc"[..], &b"rest"[..]));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse(b"3:abc]"),
            Err(CodecError::Expected { offset: 5, .. })
        ));
        assert!(matches!(
            parse(b"3:ab"),
            Err(CodecError::Truncated { offset: 0, .. })
        ));
        assert!(matches!(
            parse(b":ab,"),
            Err(CodecError::BadLength { offset: 0, .. })
        ));
    }
}
