//! SSH public keys for `git push` over ssh. The master keeps the keys and
//! writes `<data>/ssh/authorized_keys`, one line per key, each forcing the
//! command `zeroku git-ssh` (OpenSSH's `restrict,command=`): whoever holds a
//! key can push to apps and nothing else — no shell, no forwarding. sshd is
//! pointed at that file (`AuthorizedKeysFile`, see the README); the forced
//! command reaches the master's API with the token in `<data>/ssh/git-token`.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Key types OpenSSH accepts in authorized_keys.
const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A checked public key: `type base64` (the comment dropped) and its
/// `SHA256:` fingerprint as `ssh-keygen -l` prints it.
pub fn parse(text: &str) -> Result<(String, String), String> {
    let line = text.trim();
    if line.contains('\n') {
        return Err("give one public key (one line, like ~/.ssh/id_ed25519.pub)".into());
    }
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(
            "that is not an OpenSSH public key (expected `ssh-ed25519 AAAA... comment`)".into(),
        );
    };
    if !TYPES.contains(&kind) {
        return Err(format!(
            "key type {kind:?} is not one sshd accepts here (use one of: {})",
            TYPES.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the key's base64 part is damaged".to_string())?;
    // The blob starts with the key type, length-prefixed.
    let inner = blob
        .get(4..)
        .and_then(|rest| {
            let n = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
            rest.get(..n)
        })
        .ok_or("the key's base64 part is not a key")?;
    if inner != kind.as_bytes() {
        return Err("the key's type and its data do not match".into());
    }
    let fp = base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&blob));
    Ok((format!("{kind} {b64}"), format!("SHA256:{fp}")))
}

/// Where the key files live.
pub fn dir(data: &Path) -> PathBuf {
    data.join("ssh")
}

/// The authorized_keys line of a key: the forced command and no extras.
pub fn line(exe: &Path, api: &str, data: &Path, name: &str, key: &str) -> String {
    let token = dir(data).join("git-token");
    let cmd = format!(
        "{} git-ssh --url http://{api} --token-file {} --key {name}",
        exe.display(),
        token.display()
    );
    format!(
        "restrict,command=\"{}\" {key} zeroku:{name}",
        cmd.replace('"', "\\\"")
    )
}

/// Makes sure `<data>/ssh/git-token` holds a working admin token (the
/// forced command's credentials) and that authorized_keys matches the keys
/// and this binary's path; called at start.
pub fn setup(c: &crate::cluster::Cluster, data: &Path, api: &str) -> std::io::Result<()> {
    let d = dir(data);
    std::fs::create_dir_all(&d)?;
    let path = d.join("git-token");
    let works = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| c.store().token(t.trim()).ok().flatten())
        .is_some();
    if !works {
        let token = crate::store::new_token()?;
        c.store()
            .add_token(&token, crate::store::Role::Admin, None)
            .map_err(std::io::Error::other)?;
        let tmp = d.join("git-token.tmp");
        zeroku_client::write_private(&tmp, token.as_bytes())?;
        std::fs::rename(&tmp, &path)?;
    }
    let keys = c.store().keys().map_err(std::io::Error::other)?;
    write(data, api, &keys).map(|_| ())
}

/// Rewrites `<data>/ssh/authorized_keys` from the keys (atomically).
pub fn write(
    data: &Path,
    api: &str,
    keys: &[(String, String, String)],
) -> std::io::Result<PathBuf> {
    let exe = crate::exe::zeroku_exe()?;
    let d = dir(data);
    std::fs::create_dir_all(&d)?;
    let mut text =
        String::from("# Written by the zeroku master from `zeroku keys`: edits are lost.\n");
    for (name, key, _) in keys {
        text.push_str(&line(&exe, api, data, name, key));
        text.push('\n');
    }
    let path = d.join("authorized_keys");
    let tmp = d.join("authorized_keys.tmp");
    zeroku_client::write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_fingerprinted_like_ssh_keygen() {
        // ssh-keygen -t ed25519; `ssh-keygen -lf` prints this fingerprint.
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPNcCan9y+zKOnHkiik5CLWV5LIKSIHtI1oMqJLbB0G user@host";
        let (key, fp) = parse(k).unwrap();
        assert_eq!(
            key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDPNcCan9y+zKOnHkiik5CLWV5LIKSIHtI1oMqJLbB0G"
        );
        assert_eq!(fp, "SHA256:3PjtE5Vu+0Fg+mrhLshXb1c9fp+xID4GTQI23aHcQSw");
        assert!(parse("ssh-ed25519").is_err());
        assert!(parse("ssh-dss AAAA").is_err());
        assert!(parse("ssh-ed25519 !!!").is_err());
        // The type inside the blob must match.
        let rsa_blob =
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDPNcCan9y+zKOnHkiik5CLWV5LIKSIHtI1oMqJLbB0G";
        assert!(parse(rsa_blob).is_err());
        assert!(parse(&format!("{k}\ncommand=\"sh\" {k}")).is_err());
    }

    #[test]
    fn the_line_forces_the_git_command() {
        let l = line(
            Path::new("/usr/bin/zeroku"),
            "127.0.0.1:7070",
            Path::new("/var/lib/zeroku"),
            "alice",
            "ssh-ed25519 AAAA",
        );
        assert!(l.starts_with("restrict,command=\"/usr/bin/zeroku git-ssh --url http://127.0.0.1:7070 --token-file /var/lib/zeroku/ssh/git-token --key alice\" ssh-ed25519 AAAA"), "{l}");
    }
}
