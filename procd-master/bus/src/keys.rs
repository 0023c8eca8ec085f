//! CURVE key pairs: a public key a peer may show anyone, a secret key it never sends.

use crate::BusError;

/// A CURVE public key, 32 bytes.
pub type PublicKey = [u8; 32];

/// A CURVE key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub public: PublicKey,
    secret: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("Keys")
            .field("public", &z85(&self.public))
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// A new random key pair (libzmq's, from libsodium).
    pub fn generate() -> Result<Keys, BusError> {
        let pair = zmq::CurveKeyPair::new().map_err(BusError::NoCurve)?;
        Ok(Keys {
            public: pair.public_key,
            secret: pair.secret_key,
        })
    }

    /// A pair from its z85 text form ([`Keys::public_z85`], [`Keys::secret_z85`]).
    pub fn from_z85(public: &str, secret: &str) -> Result<Keys, BusError> {
        Ok(Keys {
            public: decode(public, "the public key")?,
            secret: decode(secret, "the secret key")?,
        })
    }

    pub fn public_z85(&self) -> String {
        z85(&self.public)
    }

    pub fn secret_z85(&self) -> String {
        z85(&self.secret)
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The short id of the public key ([`key_id`]).
    pub fn id(&self) -> String {
        key_id(&self.public)
    }
}

/// The z85 text of a key (40 characters).
pub fn z85(key: &[u8; 32]) -> String {
    zmq::z85_encode(key).unwrap_or_default()
}

/// A public key from its z85 text; `what` names it in the error.
pub fn decode(text: &str, what: &str) -> Result<PublicKey, BusError> {
    let bad = || BusError::BadKey {
        what: what.to_string(),
    };
    const Z85: &[u8] =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if text.len() != 40 || !text.bytes().all(|b| Z85.contains(&b)) {
        return Err(bad());
    }
    let bytes = zmq::z85_decode(text).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// A short, printable id of a public key (the hex of its first 6 bytes): enough to tell keys
/// apart in topics and logs, not to stand in for the key.
pub fn key_id(public: &PublicKey) -> String {
    public[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_z85_and_never_print_the_secret() {
        let k = Keys::generate().expect("libzmq with CURVE");
        let back = Keys::from_z85(&k.public_z85(), &k.secret_z85()).unwrap();
        assert_eq!(back, k);
        assert_eq!(k.public_z85().len(), 40);
        assert_eq!(k.id().len(), 12);
        assert!(!format!("{k:?}").contains(&k.secret_z85()));
        assert!(decode("short", "x").is_err());
        assert!(decode(&"\u{e9}".repeat(20), "x").is_err());
        assert!(Keys::from_z85(&k.public_z85(), "nope").is_err());
    }
}
