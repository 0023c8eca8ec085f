//! Decimal numbers written into byte buffers, for what is formatted on
//! every request (message lengths, connection ids, access log fields)
//! without `core::fmt` or an allocation.

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

#[cfg(test)]
mod tests {
    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 1234, u64::MAX] {
            let mut v = b"x".to_vec();
            super::put_decimal(&mut v, n);
            assert_eq!(v, format!("x{n}").into_bytes());
        }
    }
}
