//! `keys`, `keys:add`, `keys:remove`, and `git-ssh`, the command sshd
//! forces for those keys: git push over SSH.

use super::{client, enc, explain};
use crate::cli::Api;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `zeroku git-ssh`: the command sshd forces for a key from `zeroku keys`.
/// It allows `git push` (git-receive-pack) and fetch/clone (git-upload-pack)
/// of `<app>.git` and nothing else, then runs git on the master's
/// repository with the hook's credentials in its environment.
pub async fn git_ssh(url: &str, token_file: &Path, key: &str) -> Result<()> {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let (verb, arg) = original
        .split_once(' ')
        .ok_or_else(|| anyhow!("zeroku: this key only allows git push and fetch (ssh gave {original:?}); use it as a git remote"))?;
    if verb != "git-receive-pack" && verb != "git-upload-pack" {
        bail!("zeroku: this key only allows git push and fetch, not {verb:?}");
    }
    let repo = arg
        .trim()
        .trim_matches('\'')
        .trim_matches('"')
        .trim_start_matches('/');
    let app = repo.strip_suffix(".git").unwrap_or(repo);
    zeroku_conf::names::app(app)
        .map_err(|e| anyhow!("zeroku: {repo:?} is not an app's repository: {e}"))?;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("zeroku: cannot read the git token {}", token_file.display()))?;
    let api = Api {
        url: Some(url.to_string()),
        token: Some(token.trim().to_string()),
        json: false,
    };
    // The master checks that the key's user may push to (or fetch) the app,
    // and gives a short-lived token of theirs for the build.
    let v: Value = client(&api)?
        .send(
            zeroku_client::Method::POST,
            &format!("/v1/apps/{}/repo", enc(app)),
            &serde_json::json!({"key": key, "write": verb == "git-receive-pack"}),
        )
        .await
        .map_err(explain)?;
    let path = v["path"]
        .as_str()
        .ok_or_else(|| anyhow!("the master gave no repository path"))?;
    let push_token = v["token"].as_str().unwrap_or(token.trim());
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(verb)
        .arg(path)
        .env("ZEROKU_URL", url)
        .env("ZEROKU_TOKEN", push_token)
        .env("ZEROKU_APP", app)
        .exec();
    Err(anyhow!("cannot run {verb}: {err}"))
}

/// `zeroku keys`.
pub async fn list(api: &Api) -> Result<()> {
    let v: Value = client(api)?.get("/v1/keys").await.map_err(explain)?;
    if api.json {
        crate::output::json(&v);
        return Ok(());
    }
    let rows = crate::output::each(&v, |k| {
        vec![
            crate::output::cell(&k["name"]),
            crate::output::cell(&k["fingerprint"]),
        ]
    });
    crate::output::table(&["name", "fingerprint"], &rows);
    Ok(())
}

/// `zeroku keys:add [FILE] [--name N]`: FILE defaults to the user's
/// ~/.ssh/id_ed25519.pub (or id_rsa.pub).
pub async fn add(
    api: &Api,
    file: Option<PathBuf>,
    name: Option<String>,
    user: Option<String>,
) -> Result<()> {
    let file = match file {
        Some(f) => f,
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
                .iter()
                .map(|n| home.join(".ssh").join(n))
                .find(|p| p.exists())
                .ok_or_else(|| anyhow!("no public key in ~/.ssh: give its file, or make one with ssh-keygen -t ed25519"))?
        }
    };
    let key = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let name = name.unwrap_or_else(|| {
        let comment = key.split_whitespace().nth(2).unwrap_or("key");
        comment
            .split('@')
            .next()
            .unwrap_or("key")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .trim_matches('-')
            .to_string()
    });
    let v: Value = client(api)?
        .send(
            zeroku_client::Method::POST,
            "/v1/keys",
            &serde_json::json!({"name": name, "key": key, "user": user}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        crate::output::json(&v);
        return Ok(());
    }
    println!(
        "Added key {} ({})",
        crate::output::cell(&v["name"]),
        crate::output::cell(&v["fingerprint"])
    );
    println!(
        "The master keeps it in {}; its line there is:",
        crate::output::cell(&v["authorized_keys_file"])
    );
    println!("{}", crate::output::cell(&v["authorized_keys_line"]));
    println!("Point sshd at that file (AuthorizedKeysFile, see the README), then: git push ssh://<user>@<host>/<app>.git main");
    Ok(())
}

pub async fn remove(api: &Api, name: &str) -> Result<()> {
    let _: Value = client(api)?
        .send(
            zeroku_client::Method::DELETE,
            &format!("/v1/keys/{}", enc(name)),
            &serde_json::json!({}),
        )
        .await
        .map_err(explain)?;
    println!("Removed key {name}");
    Ok(())
}
