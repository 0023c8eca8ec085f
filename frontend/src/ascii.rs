//! Numbers written into byte buffers, for what is formatted on every
//! request (message lengths, connection ids, access log fields, request
//! ids) without `core::fmt` or an allocation.

/// Appends `n` in decimal.
pub fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `n` as 16 lowercase hex digits.
pub fn hex16(n: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 1234, u64::MAX] {
            let mut v = b"x".to_vec();
            super::put_decimal(&mut v, n);
            assert_eq!(v, format!("x{n}").into_bytes());
            assert_eq!(super::hex16(n), format!("{n:016x}").as_bytes());
        }
    }
}
