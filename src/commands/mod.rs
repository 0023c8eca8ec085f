//! One file per group of commands; `dispatch` maps the parsed command line
//! to them.

mod addons;
mod apps;
mod builds;
mod certs;
mod daemons;
mod git;
mod keys;
mod logs;
mod metrics;
mod nodes;
mod people;
mod ps;
mod releases;
mod routing;
mod services;
mod terminal;

use crate::cli::{Api, Command};
use anyhow::{anyhow, Context, Result};
use zeroku_client::{Client, ClientError};

pub async fn dispatch(cli: crate::cli::Cli) -> Result<()> {
    use Command::*;
    let api = cli.api;
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
        Apps => apps::list(&api).await,
        AppsCreate {
            name,
            runtime,
            stack,
        } => apps::create(&api, &name, runtime.as_deref(), stack.as_deref()).await,
        AppsInfo { app } => apps::info(&api, &app.name()?).await,
        AppsDestroy { app, confirm } => apps::destroy(&api, &app.name()?, &confirm).await,
        AppsRename { app, new_name } => apps::rename(&api, &app.name()?, &new_name).await,
        AppsSettings { app, pairs } => apps::settings(&api, &app.name()?, &pairs).await,
        Releases { app } => releases::list(&api, &app.name()?).await,
        ReleasesCreate { app, dir, message } => {
            releases::create(&api, &app.name()?, &dir, message).await
        }
        Deploy { app, path } => builds::deploy(&api, &app.name()?, &path).await,
        BuildsOutput { app } => builds::output(&api, &app.name()?).await,
        Hook { name } => match name.as_str() {
            "pre-receive" => builds::pre_receive(&api).await,
            other => Err(anyhow!("no hook named {other:?}")),
        },
        Run {
            app,
            detach,
            no_tty,
            command,
        } => logs::run(&api, &app.name()?, &command, detach, no_tty).await,
        Stacks => nodes::stacks(&api).await,
        StacksImport { name, tarball } => nodes::stacks_import(&api, &name, &tarball).await,
        Keys => keys::list(&api).await,
        KeysAdd { file, name, user } => keys::add(&api, file, name, user).await,
        Login => people::login(&api).await,
        Logout => people::logout(),
        Whoami => people::whoami(&api).await,
        Users => people::users(&api).await,
        UsersAdd { name, admin } => people::add_user(&api, &name, admin).await,
        UsersRemove { name } => people::remove_user(&api, &name).await,
        UsersToken { name } => people::user_token(&api, &name).await,
        Access { app } => people::access(&api, &app.name()?).await,
        AccessAdd {
            user,
            app,
            permissions,
        } => people::add_access(&api, &app.name()?, &user, &permissions).await,
        AccessRemove { user, app } => people::remove_access(&api, &app.name()?, &user).await,
        Audit { app, num } => people::audit(&api, app.as_deref(), num).await,
        GitRemote { app, remote } => git::remote(&api, &app.name()?, &remote).await,
        GitCredential { operation } => git::credential(&operation),
        KeysRemove { name } => keys::remove(&api, &name).await,
        GitSsh { token_file, key } => {
            let url = api
                .url
                .as_deref()
                .context("git-ssh needs --url (the master's API)")?;
            keys::git_ssh(url, &token_file, &key).await
        }
        Rollback { app, version } => {
            releases::rollback(&api, &app.name()?, version.as_deref()).await
        }
        Config { app } => releases::config(&api, &app.name()?).await,
        ConfigGet { app, key } => releases::config_get(&api, &app.name()?, &key).await,
        PsStop { app, instance } => ps::stop(&api, &app.name()?, &instance).await,
        PsRestart { app, target } => ps::restart(&api, &app.name()?, target.as_deref()).await,
        MaintenanceOn { app, page } => {
            apps::maintenance(&api, &app.name()?, true, page.as_deref()).await
        }
        MaintenanceOff { app } => apps::maintenance(&api, &app.name()?, false, None).await,
        Open { app } => apps::open(&api, &app.name()?).await,
        DomainsClear { app } => routing::clear_domains(&api, &app.name()?).await,
        NodesRemove { node } => nodes::remove(&api, &node).await,
        ConfigSet { app, pairs } => releases::config_set(&api, &app.name()?, &pairs).await,
        ConfigUnset { app, keys } => releases::config_unset(&api, &app.name()?, &keys).await,
        Ps { app } => ps::list(&api, &app.name()?).await,
        Metrics { app, minutes } => metrics::show(&api, &app.name()?, minutes).await,
        Alerts { app } => metrics::alerts(&api, &app.name()?).await,
        AlertsAdd { app, rule, webhook } => {
            metrics::add_alert(&api, &app.name()?, &rule, &webhook).await
        }
        AlertsRemove { app, id } => metrics::remove_alert(&api, &app.name()?, &id).await,
        PsScale { app, changes } => ps::scale(&api, &app.name()?, &changes).await,
        Logs {
            app,
            tail,
            num,
            ps,
            source,
            addon,
        } => {
            let filter = logs::Filter { ps, source, addon };
            logs::show(&api, &app.name()?, tail, num, &filter).await
        }
        Domains { app } => routing::domains(&api, &app.name()?).await,
        Certs { app } => certs::list(&api, &app.name()?).await,
        CertsAuto { app, off } => certs::auto(&api, &app.name()?, off).await,
        CertsAdd { app, cert, key } => certs::add(&api, &app.name()?, &cert, &key).await,
        CertsRemove { app, sha } => certs::remove(&api, &app.name()?, &sha).await,
        Addons { app } => addons::list(&api, app.as_deref()).await,
        AddonsCreate {
            kind,
            app,
            alias,
            no_wait,
            ha,
        } => {
            let how = addons::How {
                alias: alias.as_deref(),
                wait: !no_wait,
                ha,
            };
            addons::create(&api, &app.name()?, &kind, how).await
        }
        AddonsFailover { addon, app } => addons::failover(&api, &app.name()?, &addon).await,
        AddonsSettings {
            addon,
            settings,
            app,
        } => addons::settings(&api, &app.name()?, &addon, &settings).await,
        AddonsInfo { addon, app } => addons::info(&api, &app.name()?, &addon).await,
        AddonsAttach { addon, app, alias } => {
            addons::attach(&api, &app.name()?, &addon, alias.as_deref()).await
        }
        AddonsDetach { addon, app } => addons::detach(&api, &app.name()?, &addon).await,
        AddonsDestroy {
            addon,
            app,
            confirm,
            detach,
        } => addons::destroy(&api, &app.name()?, &addon, confirm.as_deref(), detach).await,
        AddonsRotate { addon, app } => addons::rotate(&api, &app.name()?, &addon).await,
        PgPsql { database, app, sql } => {
            let app = app.name()?;
            let (_, kind, var) = addons::pick(&api, &app, "postgres", database.as_deref()).await?;
            let extra: Vec<String> = sql
                .into_iter()
                .flat_map(|c| ["-c".to_string(), c])
                .collect();
            let line = addons::client_command(&kind, &var, &extra)?;
            logs::run(&api, &app, &[line], false, false).await
        }
        RedisCli { database, app } => {
            let app = app.name()?;
            let (_, kind, var) = addons::pick(&api, &app, "redis", database.as_deref()).await?;
            let line = addons::client_command(&kind, &var, &[])?;
            logs::run(&api, &app, &[line], false, false).await
        }
        PgBackups { database, app } => {
            let app = app.name()?;
            let (name, _, _) = addons::pick(&api, &app, "postgres", database.as_deref()).await?;
            addons::backups(&api, &app, &name).await
        }
        PgBackupsCapture { database, app } => {
            let app = app.name()?;
            let (name, _, _) = addons::pick(&api, &app, "postgres", database.as_deref()).await?;
            addons::capture(&api, &app, &name).await
        }
        PgBackupsSchedule {
            database,
            app,
            at,
            keep_daily,
            keep_weekly,
        } => {
            let app = app.name()?;
            let (name, _, _) = addons::pick(&api, &app, "postgres", database.as_deref()).await?;
            let body =
                serde_json::json!({"at": at, "keep_daily": keep_daily, "keep_weekly": keep_weekly});
            addons::schedule(&api, &app, &name, Some(body)).await
        }
        PgBackupsUnschedule { database, app } => {
            let app = app.name()?;
            let (name, _, _) = addons::pick(&api, &app, "postgres", database.as_deref()).await?;
            addons::schedule(&api, &app, &name, None).await
        }
        PgBackupsRestore {
            backup,
            database,
            app,
            confirm,
            to,
        } => {
            let app = app.name()?;
            let (name, _, _) = addons::pick(&api, &app, "postgres", database.as_deref()).await?;
            addons::restore(
                &api,
                &app,
                &name,
                &backup,
                confirm.as_deref(),
                to.as_deref(),
            )
            .await
        }
        PgBackupsDownload {
            backup,
            database,
            app,
            output,
        } => {
            let app = app.name()?;
            let (name, kind, _) = addons::pick(&api, &app, "postgres", database.as_deref()).await?;
            let ext = zeroku_services::kind(&kind).map_or("backup", |k| k.backup_extension());
            let out = output.unwrap_or_else(|| std::path::PathBuf::from(format!("{backup}.{ext}")));
            addons::download(&api, &app, &name, &backup, &out).await
        }
        Services { app } => services::list(&api, app.as_deref()).await,
        ServicesWatch { name, app } => services::watch(&api, &app.name()?, &name).await,
        Drains { app } => logs::drains(&api, &app.name()?).await,
        DrainsAdd { app, drain } => logs::add_drain(&api, &app.name()?, &drain).await,
        DrainsRemove { app, drain } => logs::remove_drain(&api, &app.name()?, &drain).await,
        DomainsAdd { app, domain } => routing::add_domain(&api, &app.name()?, &domain).await,
        DomainsRemove { app, domain } => routing::remove_domain(&api, &app.name()?, &domain).await,
        Routes { app } => routing::routes(&api, &app.name()?).await,
        RoutesAdd {
            app,
            prefix,
            backend,
        } => routing::add_route(&api, &app.name()?, &prefix, &backend).await,
        RoutesRemove { app, prefix } => routing::remove_route(&api, &app.name()?, &prefix).await,
        Nodes => nodes::list(&api).await,
        NodesJoinToken { ttl } => nodes::join_token(&api, &ttl).await,
        NodesDrain { node, move_addons } => nodes::drain(&api, &node, true, move_addons).await,
        NodesUndrain { node } => nodes::drain(&api, &node, false, false).await,
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

/// Sends `body` to `path`, then prints the answer (`--json`) or what `say`
/// makes of it.
pub async fn act(
    api: &Api,
    method: zeroku_client::Method,
    path: &str,
    body: &serde_json::Value,
    say: impl FnOnce(&serde_json::Value) -> String,
) -> Result<()> {
    let v: serde_json::Value = client(api)?
        .send(method, path, body)
        .await
        .map_err(explain)?;
    if api.json {
        crate::output::json(&v);
    } else {
        println!("{}", say(&v));
    }
    Ok(())
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
