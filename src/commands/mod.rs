//! One file per group of commands; `dispatch` maps the parsed command line
//! to them.

mod apps;
mod builds;
mod daemons;
mod git;
mod keys;
mod logs;
mod nodes;
mod people;
mod ps;
mod releases;
mod routing;
mod terminal;

use crate::cli::{Api, Command};
use anyhow::{anyhow, Context, Result};
use zeroku_client::{Client, ClientError};

pub async fn dispatch(cli: crate::cli::Cli) -> Result<()> {
    use Command::*;
    match cli.command {
        Up {
            data,
            config,
            master,
            node,
            http,
            admin,
            check,
        } => daemons::up(data, config, master, node, (http, admin), check).await,
        Frontend {
            data,
            config,
            name,
            master,
            token_file,
            http,
            admin,
            check,
        } => {
            let token = daemons::join_token(token_file.as_deref())?;
            let flags = daemons::FrontendFlags {
                name,
                master,
                http,
                admin,
            };
            daemons::frontend(data, config, flags, token, check).await
        }
        Master {
            data,
            config,
            flags,
            check,
        } => daemons::master(data, config, flags, check).await,
        Worker {
            data,
            config,
            node,
            master,
            token_file,
            capacity_mb,
            port_min,
            port_max,
            check,
        } => {
            let token = daemons::join_token(token_file.as_deref())?;
            let flags = daemons::WorkerFlags {
                node,
                master,
                capacity_mb,
                port_min,
                port_max,
            };
            daemons::worker(data, config, flags, token, check).await
        }
        Apps { api } => apps::list(&api).await,
        AppsCreate {
            name,
            runtime,
            stack,
            api,
        } => apps::create(&api, &name, runtime.as_deref(), stack.as_deref()).await,
        AppsInfo { app, api } => apps::info(&api, &app.app).await,
        AppsDestroy { app, confirm, api } => apps::destroy(&api, &app.app, &confirm).await,
        AppsSettings { app, pairs, api } => apps::settings(&api, &app.app, &pairs).await,
        Releases { app, api } => releases::list(&api, &app.app).await,
        ReleasesCreate {
            app,
            dir,
            message,
            api,
        } => releases::create(&api, &app.app, &dir, message).await,
        Deploy { app, path, api } => builds::deploy(&api, &app.app, &path).await,
        BuildsOutput { app, api } => builds::output(&api, &app.app).await,
        Hook { name, api } => match name.as_str() {
            "pre-receive" => builds::pre_receive(&api).await,
            other => Err(anyhow!("no hook named {other:?}")),
        },
        Run {
            app,
            detach,
            no_tty,
            command,
            api,
        } => logs::run(&api, &app.app, &command, detach, no_tty).await,
        Stacks { api } => nodes::stacks(&api).await,
        StacksImport { name, tarball, api } => nodes::stacks_import(&api, &name, &tarball).await,
        Keys { api } => keys::list(&api).await,
        KeysAdd {
            file,
            name,
            user,
            api,
        } => keys::add(&api, file, name, user).await,
        Login { api } => people::login(&api).await,
        Logout => people::logout(),
        Whoami { api } => people::whoami(&api).await,
        Users { api } => people::users(&api).await,
        UsersAdd { name, admin, api } => people::add_user(&api, &name, admin).await,
        UsersRemove { name, api } => people::remove_user(&api, &name).await,
        UsersToken { name, api } => people::user_token(&api, &name).await,
        Access { app, api } => people::access(&api, &app.app).await,
        AccessAdd {
            user,
            app,
            permissions,
            api,
        } => people::add_access(&api, &app.app, &user, &permissions).await,
        AccessRemove { user, app, api } => people::remove_access(&api, &app.app, &user).await,
        Audit { app, num, api } => people::audit(&api, app.as_deref(), num).await,
        GitRemote { app, remote, api } => git::remote(&api, &app.app, &remote).await,
        GitCredential { operation } => git::credential(&operation),
        KeysRemove { name, api } => keys::remove(&api, &name).await,
        GitSsh {
            url,
            token_file,
            key,
        } => keys::git_ssh(&url, &token_file, &key).await,
        Rollback { app, version, api } => releases::rollback(&api, &app.app, &version).await,
        Config { app, api } => releases::config(&api, &app.app).await,
        ConfigSet { app, pairs, api } => releases::config_set(&api, &app.app, &pairs).await,
        ConfigUnset { app, keys, api } => releases::config_unset(&api, &app.app, &keys).await,
        Ps { app, api } => ps::list(&api, &app.app).await,
        PsScale { app, changes, api } => ps::scale(&api, &app.app, &changes).await,
        Logs {
            app,
            tail,
            num,
            api,
        } => logs::show(&api, &app.app, tail, num).await,
        Domains { app, api } => routing::domains(&api, &app.app).await,
        DomainsAdd { app, domain, api } => routing::add_domain(&api, &app.app, &domain).await,
        DomainsRemove { app, domain, api } => routing::remove_domain(&api, &app.app, &domain).await,
        Routes { app, api } => routing::routes(&api, &app.app).await,
        RoutesAdd {
            app,
            prefix,
            backend,
            api,
        } => routing::add_route(&api, &app.app, &prefix, &backend).await,
        RoutesRemove { app, prefix, api } => routing::remove_route(&api, &app.app, &prefix).await,
        Nodes { api } => nodes::list(&api).await,
        NodesJoinToken { ttl, api } => nodes::join_token(&api, &ttl).await,
        NodesDrain { node, api } => nodes::drain(&api, &node, true).await,
        NodesUndrain { node, api } => nodes::drain(&api, &node, false).await,
    }
}

/// The API client from `ZEROKU_URL` / `ZEROKU_TOKEN`.
/// The master's URL and the token the CLI uses: ZEROKU_URL / `--url` and ZEROKU_TOKEN first,
/// then what `zeroku login` saved (its token only for its own URL).
pub fn credentials(api: &Api) -> (String, Option<String>) {
    let saved = people::Saved::load();
    let url = api
        .url
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.url.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:7070".into());
    let token = api
        .token
        .clone()
        .or_else(|| std::env::var("ZEROKU_TOKEN").ok())
        .filter(|t| !t.trim().is_empty())
        .or_else(|| saved.filter(|s| s.url == url).map(|s| s.token));
    (url, token)
}

pub fn client(api: &Api) -> Result<Client> {
    let (url, token) = credentials(api);
    let token = token.ok_or_else(|| {
        anyhow!("no API token: run `zeroku login`, or set ZEROKU_TOKEN (e.g. `. <data>/cli.env` after `zeroku up --data <data>`)")
    })?;
    Client::new(&url, &token).context("ZEROKU_URL")
}

/// Turns an API error into a message a user can act on.
pub fn explain(e: ClientError) -> anyhow::Error {
    match e.status() {
        Some(401) => anyhow!(
            "the master refused the token (401): {e}. Check ZEROKU_TOKEN (see <data>/cli.env) or run `zeroku login`"
        ),
        Some(403) => anyhow!("not allowed (403): {e}"),
        Some(404) => anyhow!("{e} (404)"),
        Some(s) => anyhow!("{e} ({s})"),
        None => anyhow!(e),
    }
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
