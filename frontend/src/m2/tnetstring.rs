//! Tagged netstrings (<http://tnetstrings.info>), as Mongrel2 uses them for
//! request headers (`protocol = "tnetstring"`) and extended replies.
//!
//! Each value is `LEN:DATA` followed by one type byte: `,` byte string,
//! `#` integer, `^` float, `!` boolean, `~` null, `}` dict, `]` list.
//! `LEN` is 1 to 9 decimal digits (the format's own limit), so a length
//! never overflows. The decoder never panics: any input yields a value or a
//! [`TnetError`] naming the byte offset of the problem. Nesting is capped at
//! [`MAX_DEPTH`] levels so hostile input cannot exhaust the stack.

use std::fmt::Write as _;

/// Deepest nesting of lists/dicts the decoder accepts.
pub const MAX_DEPTH: usize = 64;

/// A decoded tnetstring. Strings are bytes (tnetstrings are not text); dicts
/// keep their keys in wire order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(Vec<u8>),
    List(Vec<Value>),
    Dict(Vec<(Vec<u8>, Value)>),
}

/// Why a tnetstring could not be decoded; offsets are from the start of the
/// buffer handed to the decoder (or of the enclosing message, for values
/// decoded inside one by the codec).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TnetError {
    #[error("tnetstring length at byte {offset} is not 1-9 decimal digits followed by ':'")]
    BadLength { offset: usize },
    #[error("tnetstring at byte {offset} declares {declared} bytes but only {available} remain")]
    Truncated {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("tnetstring type tag missing at byte {offset} (input ends)")]
    MissingTag { offset: usize },
    #[error("unknown tnetstring type tag {tag:?} at byte {offset}")]
    UnknownTag { offset: usize, tag: char },
    #[error("invalid {kind} payload in tnetstring at byte {offset}")]
    BadPayload { offset: usize, kind: &'static str },
    #[error("dict key at byte {offset} is not a string")]
    DictKey { offset: usize },
    #[error("dict key at byte {offset} has no value")]
    DictValueMissing { offset: usize },
    #[error("tnetstring nested deeper than {MAX_DEPTH} levels at byte {offset}")]
    TooDeep { offset: usize },
    #[error("{len} trailing bytes after tnetstring at byte {offset}")]
    Trailing { offset: usize, len: usize },
}

impl Value {
    /// Encodes this value as a tnetstring.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends this value's tnetstring encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"0:~"),
            Value::Bool(true) => out.extend_from_slice(b"4:true!"),
            Value::Bool(false) => out.extend_from_slice(b"5:false!"),
            Value::Int(i) => {
                let s = i.to_string();
                put_raw(out, s.as_bytes(), b'#');
            }
            Value::Float(f) => {
                // Debug keeps a decimal point ("1.0"), as Python's repr does.
                let mut s = String::new();
                let _ = write!(s, "{f:?}");
                put_raw(out, s.as_bytes(), b'^');
            }
            Value::String(b) => put_raw(out, b, b','),
            Value::List(items) => {
                let mut body = Vec::new();
                for item in items {
                    item.encode_into(&mut body);
                }
                put_raw(out, &body, b']');
            }
            Value::Dict(pairs) => {
                let mut body = Vec::new();
                for (k, v) in pairs {
                    put_raw(&mut body, k, b',');
                    v.encode_into(&mut body);
                }
                put_raw(out, &body, b'}');
            }
        }
    }

    /// Converts to JSON. Byte strings that are not UTF-8 get U+FFFD for the
    /// bad bytes; non-finite floats become `null`; a repeated dict key keeps
    /// its last value.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(b) => J::String(String::from_utf8_lossy(b).into_owned()),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Dict(pairs) => J::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Converts from JSON. Integers outside `i64` become floats.
    pub fn from_json(v: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::String(s.as_bytes().to_vec()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Dict(
                o.iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(b) => Some(b),
            _ => None,
        }
    }
}

/// Writes `LEN:DATA` + `tag`.
pub(crate) fn put_raw(out: &mut Vec<u8>, data: &[u8], tag: u8) {
    out.reserve(data.len() + 12);
    crate::ascii::put_decimal(out, data.len() as u64);
    out.push(b':');
    out.extend_from_slice(data);
    out.push(tag);
}

/// Decodes one tnetstring from the front of `data`; returns it and the rest.
pub fn decode(data: &[u8]) -> Result<(Value, &[u8]), TnetError> {
    let (v, end) = decode_at(data, 0)?;
    Ok((v, &data[end..]))
}

/// Decodes `data`, which must hold exactly one tnetstring.
pub fn decode_exact(data: &[u8]) -> Result<Value, TnetError> {
    let (v, end) = decode_at(data, 0)?;
    if end != data.len() {
        return Err(TnetError::Trailing {
            offset: end,
            len: data.len() - end,
        });
    }
    Ok(v)
}

/// Decodes the tnetstring starting at `buf[start]`; returns it and the
/// offset just past it. Error offsets are offsets into `buf`.
pub(crate) fn decode_at(buf: &[u8], start: usize) -> Result<(Value, usize), TnetError> {
    parse(buf, start, 0)
}

/// Splits the raw frame at `start`: returns (payload range, tag, end).
pub(crate) fn frame(
    buf: &[u8],
    start: usize,
) -> Result<(std::ops::Range<usize>, u8, usize), TnetError> {
    let mut len: usize = 0;
    let mut i = start;
    loop {
        match buf.get(i) {
            Some(d @ b'0'..=b'9') if i - start < 9 => {
                len = len * 10 + usize::from(d - b'0');
                i += 1;
            }
            Some(b':') if i > start => break,
            _ => return Err(TnetError::BadLength { offset: start }),
        }
    }
    let data_start = i + 1;
    let available = buf.len().saturating_sub(data_start);
    if len > available {
        return Err(TnetError::Truncated {
            offset: start,
            declared: len,
            available,
        });
    }
    let data_end = data_start + len;
    match buf.get(data_end) {
        Some(&tag) => Ok((data_start..data_end, tag, data_end + 1)),
        None => Err(TnetError::MissingTag { offset: data_end }),
    }
}

fn parse(buf: &[u8], start: usize, depth: usize) -> Result<(Value, usize), TnetError> {
    let (range, tag, end) = frame(buf, start)?;
    let payload = &buf[range.clone()];
    let bad = |kind| TnetError::BadPayload {
        offset: range.start,
        kind,
    };
    let value = match tag {
        b',' => Value::String(payload.to_vec()),
        b'#' => {
            let s = std::str::from_utf8(payload).map_err(|_| bad("integer"))?;
            Value::Int(s.parse().map_err(|_| bad("integer"))?)
        }
        b'^' => {
            let s = std::str::from_utf8(payload).map_err(|_| bad("float"))?;
            Value::Float(s.parse().map_err(|_| bad("float"))?)
        }
        b'!' => match payload {
            b"true" => Value::Bool(true),
            b"false" => Value::Bool(false),
            _ => return Err(bad("boolean")),
        },
        b'~' => {
            if !payload.is_empty() {
                return Err(bad("null"));
            }
            Value::Null
        }
        b']' | b'}' => {
            if depth >= MAX_DEPTH {
                return Err(TnetError::TooDeep { offset: start });
            }
            // Parse within the payload only: a child may not run past it.
            let sub = &buf[..range.end];
            let mut pos = range.start;
            if tag == b']' {
                let mut items = Vec::new();
                while pos < range.end {
                    let (v, next) = parse(sub, pos, depth + 1)?;
                    items.push(v);
                    pos = next;
                }
                Value::List(items)
            } else {
                let mut pairs = Vec::new();
                while pos < range.end {
                    let key_at = pos;
                    let (k, next) = parse(sub, pos, depth + 1)?;
                    let Value::String(k) = k else {
                        return Err(TnetError::DictKey { offset: key_at });
                    };
                    if next >= range.end {
                        return Err(TnetError::DictValueMissing { offset: key_at });
                    }
                    let (v, next) = parse(sub, next, depth + 1)?;
                    pairs.push((k, v));
                    pos = next;
                }
                Value::Dict(pairs)
            }
        }
        other => {
            return Err(TnetError::UnknownTag {
                offset: range.end,
                tag: char::from(other),
            })
        }
    };
    Ok((value, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type() {
        let v = Value::Dict(vec![
            (b"s".to_vec(), Value::String(b"hello, world".to_vec())),
            (b"i".to_vec(), Value::Int(-42)),
            (b"f".to_vec(), Value::Float(1.5)),
            (b"t".to_vec(), Value::Bool(true)),
            (b"n".to_vec(), Value::Null),
            (
                b"l".to_vec(),
                Value::List(vec![Value::Int(1), Value::String(vec![])]),
            ),
        ]);
        let enc = v.encode();
        assert_eq!(decode_exact(&enc).unwrap(), v);
    }

    #[test]
    fn known_encodings() {
        assert_eq!(Value::String(b"hi".to_vec()).encode(), b"2:hi,");
        assert_eq!(Value::Int(12).encode(), b"2:12#");
        assert_eq!(Value::Float(1.0).encode(), b"3:1.0^");
        assert_eq!(Value::Bool(false).encode(), b"5:false!");
        assert_eq!(Value::Null.encode(), b"0:~");
        assert_eq!(
            Value::List(vec![Value::Int(1), Value::Null]).encode(),
            b"7:1:1#0:~]"
        );
        assert_eq!(
            Value::Dict(vec![(b"a".to_vec(), Value::Int(1))]).encode(),
            b"8:1:a,1:1#}"
        );
    }

    #[test]
    fn decode_returns_the_rest() {
        let (v, rest) = decode(b"2:hi,3:abc,").unwrap();
        assert_eq!(v, Value::String(b"hi".to_vec()));
        assert_eq!(rest, b"3:abc,");
    }

    #[test]
    fn errors_name_offsets() {
        assert_eq!(decode_exact(b"x:"), Err(TnetError::BadLength { offset: 0 }));
        assert_eq!(
            decode_exact(b"9:abc,"),
            Err(TnetError::Truncated {
                offset: 0,
                declared: 9,
                available: 4
            })
        );
        assert_eq!(
            decode_exact(b"3:abc"),
            Err(TnetError::MissingTag { offset: 5 })
        );
        assert_eq!(
            decode_exact(b"1:a?"),
            Err(TnetError::UnknownTag {
                offset: 3,
                tag: '?'
            })
        );
        assert_eq!(
            decode_exact(b"2:x1#"),
            Err(TnetError::BadPayload {
                offset: 2,
                kind: "integer"
            })
        );
        assert_eq!(
            decode_exact(b"4:1:1#}"),
            Err(TnetError::DictKey { offset: 2 })
        );
        assert_eq!(
            decode_exact(b"4:1:a,}"),
            Err(TnetError::DictValueMissing { offset: 2 })
        );
        assert_eq!(
            decode_exact(b"0:~x"),
            Err(TnetError::Trailing { offset: 3, len: 1 })
        );
        assert_eq!(
            decode_exact(b"1234567890:"),
            Err(TnetError::BadLength { offset: 0 })
        );
        // A child whose declared length runs past its parent is truncated.
        assert!(matches!(
            decode_exact(b"3:5:a]bcde,"),
            Err(TnetError::Truncated { offset: 2, .. })
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut v = b"0:]".to_vec();
        for _ in 0..200 {
            let mut outer = format!("{}:", v.len()).into_bytes();
            outer.extend_from_slice(&v);
            outer.push(b']');
            v = outer;
        }
        assert!(matches!(decode_exact(&v), Err(TnetError::TooDeep { .. })));
    }

    #[test]
    fn json_conversion() {
        let j = serde_json::json!({"a": [1, "x", null, true, 2.5]});
        let t = Value::from_json(&j);
        assert_eq!(t.to_json(), j);
        assert_eq!(decode_exact(&t.encode()).unwrap().to_json(), j);
    }
}
