//! Automatic certificates against a real ACME server: Debian's `pebble` (Let's Encrypt's test
//! CA) with `pebble-challtestsrv` answering its DNS (every name is 127.0.0.1), both started
//! here on free ports. The master orders over HTTP-01, the frontends answer the challenge and
//! serve the certificate by SNI to a client (curl) that trusts only pebble's root.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASE: &str = "zeroku.test";

/// pebble and its DNS (once started), killed when dropped.
struct Pebble {
    dir: PathBuf,
    children: Vec<ChildGuard>,
    ports: [u16; 4],
    /// The ACME directory URL.
    directory: String,
    /// The HTTPS CA of pebble's own listener (for the master's ACME client).
    listener_ca: PathBuf,
    management: String,
    dns_management: String,
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl {args:?}");
}

/// `openssl req` with a new P-256 key (`-x509`: self-signed) and `args`.
fn ec_req(dir: &Path, x509: bool, args: &[&str]) {
    let mut all = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    if x509 {
        all.push("-x509");
    }
    all.extend_from_slice(args);
    openssl(dir, &all);
}

/// pebble's ports and its listener's certificate, before it starts (the master's
/// configuration names them; pebble needs the frontend's HTTP port).
fn pebble(dir: &Path) -> Pebble {
    let dir = dir.join("pebble");
    std::fs::create_dir_all(&dir).unwrap();
    // pebble's own HTTPS listener: a CA and a certificate for 127.0.0.1 signed by it.
    ec_req(
        &dir,
        true,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pebble listener CA",
        ],
    );
    ec_req(
        &dir,
        false,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let ports = [free_port(), free_port(), free_port(), free_port()];
    Pebble {
        children: Vec::new(),
        directory: format!("https://127.0.0.1:{}/dir", ports[0]),
        listener_ca: dir.join("ca.pem"),
        management: format!("https://127.0.0.1:{}", ports[1]),
        dns_management: format!("http://127.0.0.1:{}", ports[3]),
        ports,
        dir,
    }
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` (a frontend's), issuing certificates
    /// valid `validity_secs`, and its DNS (every name 127.0.0.1 unless told otherwise).
    fn start(&mut self, http_port: u16, validity_secs: u64) {
        let [listen, mgmt, dns, dns_mgmt] = self.ports;
        let dir = &self.dir;
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let log = |n: &str| std::fs::File::create(dir.join(n)).unwrap();
        let dns_child = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .arg("-dns01")
            .arg(format!("127.0.0.1:{dns}"))
            .arg("-management")
            .arg(format!("127.0.0.1:{dns_mgmt}"))
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt install pebble)");
        self.children.push(ChildGuard(dns_child));
        let child = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (apt install pebble)");
        self.children.push(ChildGuard(child));
        for addr in [
            format!("127.0.0.1:{listen}"),
            format!("127.0.0.1:{dns_mgmt}"),
        ] {
            eventually(Duration::from_secs(15), "pebble listening", || {
                std::net::TcpStream::connect(&addr)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        }
    }
}

impl Pebble {
    /// pebble's issuing root (a new one each run), written to `to`.
    fn root(&self, to: &Path) -> PathBuf {
        let o = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&self.listener_ca)
            .arg(format!("{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::write(to, &o.stdout).unwrap();
        to.to_path_buf()
    }

    /// Makes `host` resolve to `ip` for pebble.
    fn add_a(&self, host: &str, ip: &str) {
        let o = Command::new("curl")
            .args(["-sS", "--fail", "-d"])
            .arg(serde_json::json!({"host": host, "addresses": [ip]}).to_string())
            .arg(format!("{}/add-a", self.dns_management))
            .output()
            .expect("curl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// GET `https://host:port/` trusting only `root`; (status, headers, body, the certificate's
/// serial).
fn https_get(root: &Path, host: &str, port: &str) -> Result<(u16, String, String, String), String> {
    let o = Command::new("curl")
        .args(["-sS", "-i", "-v", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        return Err(err);
    }
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no head")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    // curl -v prints the server certificate's "start date"/"expire date"; the serial comes
    // from openssl below.
    let _ = err;
    let serial = served_serial(host, port)?;
    Ok((status, head.to_string(), body.to_string(), serial))
}

/// The serial number of the certificate served for `host` (SNI).
fn served_serial(host: &str, port: &str) -> Result<String, String> {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            host,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    x509.stdin
        .take()
        .ok_or("stdin")?
        .write_all(&out.stdout)
        .map_err(|e| e.to_string())?;
    let s = x509.wait_with_output().map_err(|e| e.to_string())?;
    let serial = String::from_utf8_lossy(&s.stdout).trim().to_string();
    if serial.starts_with("serial=") {
        Ok(serial)
    } else {
        Err("no certificate served".into())
    }
}

const WEB_PY: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        out = ("shop over %s" % self.headers.get("X-Forwarded-Proto")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

fn config(p: &Pebble, renew_days: u32) -> String {
    format!(
        "{TEST_CONFIG}\n[frontend]\nbase_domain = \"{BASE}\"\n",
    )
    .replace(
        "[master]\n",
        &format!(
            "[master]\napp_url = \"http://{{app}}.{BASE}\"\nacme_directory = \"{}\"\nacme_ca_root = \"{}\"\nacme_renew_days = {renew_days}\nacme_check_ms = 1000\nalert_check_ms = 500\n",
            p.directory,
            p.listener_ca.display()
        ),
    )
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

fn certs(c: &TestCluster, app: &str) -> serde_json::Value {
    c.json(&["certs", "-a", app])
}

#[test]
fn certs_auto_issues_serves_on_every_frontend_renews_and_survives_a_restart() {
    let dir = tempdir();
    let mut p = pebble(dir.path());
    let mut c = TestCluster::start_with(&config(&p, 30));
    c.add_worker("w1", 34700);
    let (https1, https2) = (free_port().to_string(), free_port().to_string());
    let http1 = c.add_frontend_with(
        "edge1",
        &[("ZEROKU_FRONTEND_HTTPS", &format!("127.0.0.1:{https1}"))],
    );
    c.add_frontend_with(
        "edge2",
        &[("ZEROKU_FRONTEND_HTTPS", &format!("127.0.0.1:{https2}"))],
    );
    // Certificates valid 90 days, as Let's Encrypt's.
    // Short-lived certificates (45 s): renewed a third of their life before the end, 30 s
    // after issue, which the test waits for below.
    p.start(port_of(&http1), 45);
    c.deploy(
        "shop",
        &[("Procfile", "web: python3 app.py\n"), ("app.py", WEB_PY)],
    );
    c.cli_ok(&["domains:add", "-a", "shop", "www.shop.example"])
        .unwrap();
    c.wait_up("shop", 1, Duration::from_secs(30));
    let root = p.root(&dir.path().join("pebble-root.pem"));

    // Without a certificate, HTTPS for the app fails (no fallback configured).
    assert!(https_get(&root, "shop.zeroku.test", &https1).is_err());

    let started = Instant::now();
    let out = c.cli_ok(&["certs:auto", "-a", "shop"]).unwrap();
    assert!(out.contains("being ordered"), "{out}");
    let (status, _, body, serial) = eventually(
        Duration::from_secs(30),
        "HTTPS with the new certificate",
        || https_get(&root, "shop.zeroku.test", &https1),
    );
    let first_https = started.elapsed();
    eprintln!(
        "figure: certs:auto -> first HTTPS request served: {} ms",
        first_https.as_millis()
    );
    assert_eq!(status, 200);
    assert_eq!(body, "shop over https");
    // The custom domain is on the same certificate, and the second frontend serves it too.
    let (s2, _, _, serial2) = eventually(Duration::from_secs(15), "the second frontend", || {
        https_get(&root, "www.shop.example", &https2)
    });
    assert_eq!((s2, &serial2), (200, &serial));

    let v = certs(&c, "shop");
    assert_eq!(v["auto"], true);
    let list = v["certs"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["source"], "auto");
    assert_eq!(
        list[0]["names"],
        serde_json::json!(["shop.zeroku.test", "www.shop.example"])
    );
    assert!(
        list[0]["issuer"].as_str().unwrap().contains("Pebble"),
        "{v}"
    );
    assert!(
        list[0]["not_after"].as_u64().unwrap() > 1_700_000_000,
        "{v}"
    );
    let sha = list[0]["sha256"].as_str().unwrap().to_string();
    let text = c.cli_ok(&["certs", "-a", "shop"]).unwrap();
    assert!(
        text.contains("www.shop.example") && text.contains("expires"),
        "{text}"
    );
    // The key stays with the master and the frontends: users see none.
    assert!(!v.to_string().contains("PRIVATE KEY"));

    // HTTP -> HTTPS, and HSTS on HTTPS answers.
    c.cli_ok(&["apps:settings", "-a", "shop", "force_https=on", "hsts=on"])
        .unwrap();
    let (code, head, _) = eventually(Duration::from_secs(10), "a redirect", || {
        let r = http_get(&http1, "shop.zeroku.test", "/cart?x=1")?;
        if r.0 == 301 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert_eq!(code, 301);
    assert!(
        head.contains(&format!(
            "location: https://shop.zeroku.test:{https1}/cart?x=1"
        )),
        "{head}"
    );
    let (_, head, _, _) = eventually(Duration::from_secs(10), "HSTS", || {
        let r = https_get(&root, "shop.zeroku.test", &https1)?;
        if r.1.contains("strict-transport-security: max-age=31536000") {
            Ok(r)
        } else {
            Err(r.1)
        }
    });
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The CA's challenge path is still answered over plain HTTP (not redirected): any
    // well-formed token with the account's thumbprint (what only this account's orders can
    // use), nothing else.
    let r = http_get(
        &http1,
        "shop.zeroku.test",
        "/.well-known/acme-challenge/tok_1",
    )
    .unwrap();
    assert_eq!(r.0, 200, "{r:?}");
    assert!(r.2.starts_with("tok_1.") && r.2.len() > 40, "{r:?}");
    let r = http_get(
        &http1,
        "shop.zeroku.test",
        "/.well-known/acme-challenge/a.b",
    )
    .unwrap();
    assert_eq!(r.0, 404, "{r:?}");

    // A restart orders nothing: the certificate is kept.
    let checks = |c: &TestCluster| {
        c.master
            .daemon
            .log_text()
            .matches("certificates checked")
            .count()
    };
    let before = checks(&c);
    c.restart_master();
    eventually(
        Duration::from_secs(15),
        "the restarted master's certificate check",
        || {
            if checks(&c) > before {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    );
    let v = certs(&c, "shop");
    assert_eq!(v["certs"][0]["sha256"], sha.as_str(), "{v}");
    assert_eq!(
        c.master
            .daemon
            .log_text()
            .matches("ordering a certificate")
            .count(),
        1
    );

    // Renewal: a third of its life before the end, a new one is ordered and served by both
    // frontends.
    for (host, port) in [("shop.zeroku.test", &https1), ("www.shop.example", &https2)] {
        eventually(Duration::from_secs(60), "the renewed certificate", || {
            let (s, _, _, now) = https_get(&root, host, port)?;
            if s == 200 && now != serial {
                Ok(())
            } else {
                Err(format!("still {now}"))
            }
        });
    }
    let v = certs(&c, "shop");
    assert_eq!(v["certs"].as_array().unwrap().len(), 1, "{v}");
    assert_ne!(v["certs"][0]["sha256"], sha.as_str());
}

#[test]
fn a_failing_challenge_is_said_in_plain_words_and_a_manual_certificate_is_checked() {
    let dir = tempdir();
    let mut p = pebble(dir.path());
    let mut c = TestCluster::start_with(&config(&p, 30));
    let http1 = c.add_frontend("edge1");
    p.start(port_of(&http1), 90 * 86_400);
    c.cli_ok(&["apps:create", "blog"]).unwrap();
    c.cli_ok(&["domains:add", "-a", "blog", "blog.example"])
        .unwrap();
    // blog.example points elsewhere: nothing listens there on port 80.
    p.add_a("blog.example", "127.0.0.2");
    c.cli_ok(&["certs:auto", "-a", "blog"]).unwrap();
    let v = eventually(Duration::from_secs(30), "the failure", || {
        let v = certs(&c, "blog");
        if v["last_error"].as_str().is_some_and(|e| !e.is_empty()) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    let e = v["last_error"].as_str().unwrap();
    assert!(
        e.contains("not reachable") && e.contains("blog.example"),
        "{e}"
    );
    assert!(v["next_try"].as_u64().unwrap() > 0, "{v}");
    // The name that passed got its certificate meanwhile: one bad domain does not leave the
    // app without one.
    let v = eventually(
        Duration::from_secs(30),
        "a certificate for the other name",
        || {
            let v = certs(&c, "blog");
            if v["certs"].as_array().is_some_and(|a| !a.is_empty()) {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    );
    assert_eq!(
        v["certs"][0]["names"],
        serde_json::json!(["blog.zeroku.test"]),
        "{v}"
    );
    assert!(
        v["last_error"].as_str().unwrap().contains("blog.example"),
        "{v}"
    );
    let text = c.cli_ok(&["certs", "-a", "blog"]).unwrap();
    assert!(
        text.contains("Last error") && text.contains("not reachable"),
        "{text}"
    );
    let logs = c.cli_ok(&["logs", "-a", "blog"]).unwrap();
    assert!(logs.contains("No certificate for"), "{logs}");

    // certs:add takes PEM files, refuses a key that is not the certificate's.
    let d = dir.path();
    for n in ["a", "b"] {
        ec_req(
            d,
            true,
            &[
                "-keyout",
                &format!("{n}.key"),
                "-out",
                &format!("{n}.pem"),
                "-days",
                "30",
                "-subj",
                "/CN=blog.example",
                "-addext",
                "subjectAltName=DNS:blog.example",
            ],
        );
    }
    let path = |f: &str| d.join(f).to_str().unwrap().to_string();
    let e = c
        .cli_ok(&["certs:add", "-a", "blog", &path("a.pem"), &path("b.key")])
        .unwrap_err();
    assert!(e.contains("not the certificate's"), "{e}");
    let out = c
        .cli_ok(&["certs:add", "-a", "blog", &path("a.pem"), &path("a.key")])
        .unwrap();
    assert!(out.contains("blog.example"), "{out}");
    let v = certs(&c, "blog");
    let manual: Vec<&serde_json::Value> = v["certs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["source"] == "manual")
        .collect();
    assert_eq!(manual.len(), 1, "{v}");
    let sha = manual[0]["sha256"].as_str().unwrap()[..10].to_string();
    // It expires in 30 days: an expiry alert set at 40 fires (said in the app's log; the
    // webhook here answers nothing).
    let hook = format!("http://127.0.0.1:{}/hook", free_port());
    c.cli_ok(&[
        "alerts:add",
        "-a",
        "blog",
        "cert_days < 40",
        "--webhook",
        &hook,
    ])
    .unwrap();
    eventually(Duration::from_secs(10), "the expiry alert", || {
        let logs = c.cli_ok(&["logs", "-a", "blog"])?;
        if logs.contains("'cert_days < 40' is firing") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    c.cli_ok(&["certs:remove", "-a", "blog", &sha]).unwrap();
    let v = certs(&c, "blog");
    assert!(
        v["certs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["source"] == "auto"),
        "{v}"
    );
}
