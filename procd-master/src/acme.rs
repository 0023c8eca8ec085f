//! Certificates over ACME (RFC 8555) with the HTTP-01 challenge, through `instant-acme`.
//!
//! For every app with `certs_auto` on (or every app, with `[master] acme_auto`) the master
//! wants one certificate for `<app>.<base domain>` and its custom domains. It orders one when
//! the app has none, when its names changed, or when fewer than `acme_renew_days` are left;
//! never merely because the master restarted (certificates are in the store). Challenges go
//! to every frontend in the route table (a frontend that has not heard yet asks the master);
//! the certificate and key go to the store, and frontends fetch them by hash. A failure is
//! kept in plain words (`zeroku certs`), said in the app's log, and retried after a back-off
//! (five minutes, doubling, at most a day): CAs limit how often one may fail. When only some
//! names fail (a custom domain whose DNS went elsewhere), the others are ordered without them
//! meanwhile, so one bad domain does not let the app's certificate expire.
//!
//! One account per ACME directory, made on first use and kept in the store.

use crate::cluster::Cluster;
use crate::store::{now, Cert, StoreError};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    Problem, RetryPolicy,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zeroku_conf::AcmeChallenge;

/// Whether `app` gets certificates over ACME.
pub fn auto_on(c: &Cluster, app: &str, settings: &[(String, String, String)]) -> bool {
    match settings
        .iter()
        .find(|(a, k, _)| a == app && k == "certs_auto")
        .map(|(_, _, v)| v.as_str())
    {
        Some("on") => true,
        Some(_) => false,
        None => c.cfg.acme_auto,
    }
}

/// The names `app`'s certificate must cover: `<app>.<base domain>` and its custom domains
/// (HTTP-01 cannot prove a wildcard: those are left out).
pub fn wanted_names(c: &Cluster, app: &str) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = c
        .store()
        .domains()?
        .into_iter()
        .filter(|(d, a)| a == app && !d.starts_with("*."))
        .map(|(d, _)| d)
        .collect();
    if let Some(base) = crate::settings::base_domain(&c.cfg.app_url) {
        names.push(format!("{app}.{base}"));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// The longest one order may take, from the account to the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// Back-off after `failures` failures in a row, seconds.
fn backoff(failures: u32) -> u64 {
    (300u64 << failures.saturating_sub(1).min(11)).min(86_400)
}

/// Checks every app now and then (`acme_check_ms`, sooner when a back-off ends or
/// [`Cluster::acme_wake`] is called) until `shutdown`.
pub async fn run(c: Arc<Cluster>, shutdown: CancellationToken) {
    let every = Duration::from_millis(c.cfg.acme_check_ms);
    loop {
        let next_try = check_all(&c, &shutdown).await;
        let wait = match next_try {
            Some(t) => every.min(Duration::from_secs(t.saturating_sub(now()).max(1))),
            None => every,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = c.acme_changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Orders what is due; returns the earliest time an app that failed may be tried again.
async fn check_all(c: &Arc<Cluster>, shutdown: &CancellationToken) -> Option<u64> {
    let (apps, settings) = {
        let s = c.store();
        match (s.apps(), s.settings()) {
            (Ok(a), Ok(st)) => (a, st),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot read the apps to check certificates");
                return None;
            }
        }
    };
    let mut earliest: Option<u64> = None;
    let mut account: Option<Account> = None;
    for app in apps.iter().map(|a| a.name.as_str()) {
        if shutdown.is_cancelled() || !auto_on(c, app, &settings) {
            continue;
        }
        // A second round when some names failed: the others are ordered without them.
        for _ in 0..2 {
            let plan = match due(c, app) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(app, error = %e, "cannot read the app's certificates");
                    break;
                }
            };
            let names = match plan {
                Due::No => {
                    // Every name it wants is covered: an error from a name since removed
                    // (or that passed since) is over.
                    let s = c.store();
                    if s.cert_status(app).is_ok_and(|st| st.failures > 0) {
                        if let Err(e) = s.cert_succeeded(app) {
                            tracing::error!(app, error = %e, "cannot clear the certificate error");
                        }
                    }
                    break;
                }
                Due::Later(t) => {
                    earliest = Some(earliest.map_or(t, |e| e.min(t)));
                    break;
                }
                Due::Now(names) => names,
            };
            match order(c, &mut account, app, &names, shutdown).await {
                Some(Ok(())) => {
                    // Issued without some names: they are tried again after their back-off.
                    let next = c.store().cert_status(app).map_or(0, |s| s.next_try);
                    if next > now() {
                        earliest = Some(earliest.map_or(next, |e| e.min(next)));
                    }
                    break;
                }
                Some(Err(next)) => earliest = Some(earliest.map_or(next, |x| x.min(next))),
                None => return None,
            }
        }
    }
    tracing::debug!(apps = apps.len(), "certificates checked");
    earliest
}

/// One order for `app`'s `names`, recorded: `Ok` when issued, `Err(next try)` when not,
/// `None` when shut down.
async fn order(
    c: &Cluster,
    account: &mut Option<Account>,
    app: &str,
    names: &[String],
    shutdown: &CancellationToken,
) -> Option<Result<(), u64>> {
    tracing::info!(app, names = ?names, "ordering a certificate");
    let started = std::time::Instant::now();
    // A CA that stops answering must not hold up every other app's renewal.
    let got = tokio::select! {
        _ = shutdown.cancelled() => return None,
        r = tokio::time::timeout(ORDER_TIMEOUT, obtain(c, account, app, names)) => {
            r.unwrap_or_else(|_| Err(Failed::whole(format!(
                "the CA did not finish the order within {} s; it will be tried again",
                ORDER_TIMEOUT.as_secs()
            ))))
        }
    };
    match got {
        Ok(cert) => {
            tracing::info!(
                app,
                ms = started.elapsed().as_millis() as u64,
                not_after = cert.not_after,
                "certificate issued"
            );
            c.system_log(
                app,
                "acme",
                format!(
                    "Certificate for {} issued by {}, valid until {}",
                    cert.names.join(", "),
                    cert.issuer,
                    day(cert.not_after)
                ),
            );
            let all = wanted_names(c, app).is_ok_and(|w| w == cert.names);
            // (One lock of the store for both: it is not re-entrant.)
            let stored = {
                let mut store = c.store();
                match store.put_cert(&cert) {
                    Ok(()) if all => store.cert_succeeded(app),
                    r => r,
                }
            };
            if let Err(e) = stored {
                tracing::error!(app, error = %e, "cannot store the new certificate");
            }
            c.refresh_routes();
            Some(Ok(()))
        }
        Err(f) => {
            tracing::warn!(app, error = %f.error, "no certificate");
            c.system_log(
                app,
                "acme",
                format!("No certificate for {}: {}", names.join(", "), f.error),
            );
            // Names that failed while others passed: the rest go on without them.
            let failed = if !f.names.is_empty() && f.names.len() < names.len() {
                f.names
            } else {
                Vec::new()
            };
            if let Err(se) = c.store().cert_failed(app, &f.error, &failed, backoff) {
                tracing::error!(app, error = %se, "cannot record the certificate failure");
            }
            Some(Err(c
                .store()
                .cert_status(app)
                .map(|s| s.next_try)
                .unwrap_or(0)))
        }
    }
}

/// Whether `app` needs an order.
#[derive(Debug, PartialEq)]
enum Due {
    No,
    /// After a failure's back-off, at this time.
    Later(u64),
    Now(Vec<String>),
}

/// What `app` needs now: its wanted names (less those that failed, while their back-off
/// lasts) when it has no certificate, when its certificate's names differ, or when it is
/// near its end.
fn due(c: &Cluster, app: &str) -> Result<Due, StoreError> {
    let mut names = wanted_names(c, app)?;
    let status = c.store().cert_status(app)?;
    let waiting = status.next_try > now();
    if waiting {
        if status.failed_names.is_empty() {
            return Ok(Due::Later(status.next_try));
        }
        names.retain(|n| !status.failed_names.contains(n));
    }
    if names.is_empty() {
        return Ok(if waiting {
            Due::Later(status.next_try)
        } else {
            Due::No
        });
    }
    let current = c
        .store()
        .app_certs(app)?
        .into_iter()
        .filter(|x| x.source == "auto")
        .max_by_key(|x| x.not_after);
    let Some(cur) = current else {
        return Ok(Due::Now(names));
    };
    // `acme_renew_days` before expiry, or a third of its life for a certificate that lives
    // shorter (else a short-lived one would be due as soon as it is issued).
    let life = cur.not_after.saturating_sub(cur.created_at);
    let renew_at = cur
        .not_after
        .saturating_sub(c.cfg.acme_renew_days.saturating_mul(86_400).min(life / 3));
    // While some names are left out, a certificate that still has them all is kept until it
    // is near its end, not replaced by one with fewer.
    let short = names.iter().any(|n| !cur.names.contains(n)) || (!waiting && cur.names != names);
    Ok(if short || now() >= renew_at {
        Due::Now(names)
    } else if waiting {
        Due::Later(status.next_try)
    } else {
        Due::No
    })
}

use zeroku_conf::time::date as day;

/// The account for the configured directory: the stored one, or a new one (stored).
async fn account(c: &Cluster) -> Result<Account, String> {
    let dir = c.cfg.acme_directory.clone();
    let builder = || {
        if c.cfg.acme_ca_root.is_empty() {
            Account::builder()
        } else {
            Account::builder_with_root(&c.cfg.acme_ca_root)
        }
        .map_err(|e| format!("cannot set up a client for {dir}: {e}"))
    };
    let saved = c.store().acme_account(&dir).map_err(|e| e.to_string())?;
    if let Some(saved) = saved {
        let creds = serde_json::from_str(&saved)
            .map_err(|e| format!("the stored ACME account is unreadable: {e}"))?;
        let account = builder()?
            .from_credentials(creds)
            .await
            .map_err(|e| format!("the ACME directory {dir}: {}", words(&e)))?;
        c.set_acme_thumbprint(account.key_thumbprint());
        return Ok(account);
    }
    let contact = (!c.cfg.acme_email.is_empty()).then(|| format!("mailto:{}", c.cfg.acme_email));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            dir.clone(),
            None,
        )
        .await
        .map_err(|e| format!("cannot open an account at {dir}: {}", words(&e)))?;
    let json = serde_json::to_string(&creds).map_err(|e| e.to_string())?;
    c.store()
        .put_acme_account(&dir, &json)
        .map_err(|e| e.to_string())?;
    tracing::info!(directory = %dir, id = account.id(), "ACME account created");
    c.set_acme_thumbprint(account.key_thumbprint());
    Ok(account)
}

/// Stops answering an order's challenges however the order ends.
struct Answering<'a> {
    c: &'a Cluster,
    tokens: Vec<String>,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if !self.tokens.is_empty() {
            self.c.remove_acme_challenges(&self.tokens);
        }
    }
}

/// Why an order failed, and the names whose challenge failed (empty: all, or none known).
struct Failed {
    error: String,
    names: Vec<String>,
}

impl Failed {
    fn whole(error: String) -> Failed {
        Failed {
            error,
            names: Vec::new(),
        }
    }
}

impl From<String> for Failed {
    fn from(error: String) -> Failed {
        Failed::whole(error)
    }
}

/// One order, from new to certificate.
async fn obtain(
    c: &Cluster,
    account: &mut Option<Account>,
    app: &str,
    names: &[String],
) -> Result<Cert, Failed> {
    if account.is_none() {
        *account = Some(self::account(c).await?);
    }
    let Some(acct) = account.as_ref() else {
        return Err(Failed::whole("no ACME account".into()));
    };
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = match acct.new_order(&NewOrder::new(&ids)).await {
        Ok(o) => o,
        // Refused at once (a name the CA will not issue for, a CAA record): the names the
        // problem's parts name failed; the others may go on without them.
        Err(instant_acme::Error::Api(p)) => {
            let names: Vec<String> = p
                .subproblems
                .iter()
                .filter_map(|sp| match &sp.identifier {
                    Some(Identifier::Dns(n)) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            let error = match p.subproblems.first() {
                Some(sp) => {
                    let name = names.first().cloned().unwrap_or_default();
                    problem_words(
                        &Problem {
                            r#type: sp.r#type.clone(),
                            detail: sp.detail.clone(),
                            status: p.status,
                            subproblems: Vec::new(),
                        },
                        &name,
                    )
                }
                None => problem_words(&p, ""),
            };
            return Err(Failed { error, names });
        }
        Err(e) => return Err(words(&e).into()),
    };
    let mut answering = Answering {
        c,
        tokens: Vec::new(),
    };
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(|e| words(&e))?;
            let name = a.identifier().to_string();
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                s => return Err(format!("the CA says {name} is {s:?}").into()),
            }
            let mut ch = a
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| format!("the CA offers no HTTP-01 challenge for {name}"))?;
            answering.tokens.push(ch.token.clone());
            c.add_acme_challenge(AcmeChallenge {
                token: ch.token.clone(),
                key_authorization: ch.key_authorization().as_str().to_string(),
            });
            ch.set_ready().await.map_err(|e| words(&e))?;
        }
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(200))
        .timeout(Duration::from_secs(90));
    // An invalid order comes back as its status or as its error document: either way the
    // challenges say which names failed and why.
    let status = match order.poll_ready(&retry).await {
        Ok(s) => s,
        Err(instant_acme::Error::Api(_)) => OrderStatus::Invalid,
        Err(e) => return Err(words(&e).into()),
    };
    if status != OrderStatus::Ready {
        let (error, names) = why_invalid(&mut order).await;
        return Err(Failed { error, names });
    }
    drop(answering);
    let key_pem = order.finalize().await.map_err(|e| words(&e))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| words(&e))?;
    let d = crate::certs::describe(&chain_pem, &key_pem)
        .map_err(|e| format!("the CA's certificate is unusable: {e}"))?;
    Ok(Cert {
        app: app.to_string(),
        sha256: d.sha256,
        source: "auto".into(),
        names: d.names,
        issuer: d.issuer,
        not_after: d.not_after,
        chain_pem,
        key_pem,
        created_at: now(),
    })
}

/// What the CA said of the challenges of an order that failed, and the names they were for.
async fn why_invalid(order: &mut instant_acme::Order) -> (String, Vec<String>) {
    let (mut out, mut names) = (Vec::new(), Vec::new());
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let Ok(mut a) = a else { continue };
        let _ = a.refresh().await;
        let name = a.identifier().to_string();
        for ch in &a.challenges {
            if let Some(p) = &ch.error {
                out.push(problem_words(p, &name));
                names.push(name.clone());
            }
        }
    }
    names.sort();
    names.dedup();
    if out.is_empty() {
        (
            "the CA refused the order without saying why".into(),
            Vec::new(),
        )
    } else {
        (out.join("; "), names)
    }
}

fn words(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => problem_words(p, ""),
        instant_acme::Error::Timeout(_) => {
            "the CA did not finish validating in time (it may still; the next try will see)".into()
        }
        e => format!("cannot talk to the ACME CA: {e}"),
    }
}

/// An ACME problem (RFC 8555 §6.7) in words a user can act on.
fn problem_words(p: &Problem, name: &str) -> String {
    let kind = p
        .r#type
        .as_deref()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("");
    let detail = p.detail.as_deref().unwrap_or("no detail");
    let name = if name.is_empty() { "the name" } else { name };
    match kind {
        "dns" => format!(
            "DNS for {name} does not point here: the CA could not resolve it ({detail}); add an A/AAAA record for the frontends"
        ),
        "connection" => format!(
            "the challenge was not reachable: the CA could not connect to http://{name}/.well-known/acme-challenge/ ({detail}); port 80 must reach a zeroku frontend"
        ),
        "unauthorized" | "incorrectResponse" => format!(
            "the CA got a wrong answer from http://{name}/.well-known/acme-challenge/ ({detail}): does {name} point at another server?"
        ),
        "rateLimited" => format!("rate limited by the CA: {detail}; it will be tried again later"),
        "caa" => format!("a CAA record of {name} forbids this CA: {detail}"),
        "rejectedIdentifier" => format!("the CA will not issue for {name}: {detail}"),
        _ => format!("the CA refused: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_five_minutes_to_a_day() {
        assert_eq!(backoff(1), 300);
        assert_eq!(backoff(2), 600);
        assert_eq!(backoff(5), 4800);
        assert_eq!(backoff(40), 86_400);
    }

    #[test]
    fn problems_read_as_what_to_do() {
        let p = |t: &str| Problem {
            r#type: Some(format!("urn:ietf:params:acme:error:{t}")),
            detail: Some("x".into()),
            status: Some(400),
            subproblems: vec![],
        };
        assert!(problem_words(&p("dns"), "a.example.com").contains("does not point here"));
        assert!(problem_words(&p("connection"), "a.example.com").contains("not reachable"));
        assert!(problem_words(&p("rateLimited"), "").contains("rate limited"));
    }
}
