//! `git push` → live: real git over HTTP to the master, the builder running
//! buildpacks, the release rolled out by real workers behind a real frontend.

mod common;
#[path = "common/git.rs"]
mod git;

use common::*;
use git::Repo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn buildpack(name: &str) -> String {
    format!("{}/tests/buildpacks/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A cluster with one worker and one frontend; returns it and the frontend.
/// `master_keys` go into the config's [master] section.
fn cluster(master_keys: &str, port_min: u16) -> (TestCluster, String) {
    let keys = if master_keys.contains("deploy_timeout_secs") {
        master_keys.to_string()
    } else {
        format!("deploy_timeout_secs = 30\n{master_keys}")
    };
    let config = TEST_CONFIG.replace("[master]\n", &format!("[master]\n{keys}"));
    let mut c = TestCluster::start_with(&config);
    c.add_worker("n1", port_min);
    let fe = c.add_frontend("edge");
    (c, fe)
}

/// Creates the app; returns its git URL (no token in it: pushes authenticate
/// through `zeroku git-credential`, see `TestCluster::git_login`).
fn create(c: &TestCluster, app: &str) -> String {
    c.cli_ok(&["apps:create", app])
        .unwrap_or_else(|e| panic!("{e}"));
    let info = c.json(&["apps:info", "-a", app]);
    info["git_url"].as_str().expect("git_url").to_string()
}

fn body(fe: &str, app: &str, path: &str) -> String {
    wait_http_ok(
        fe,
        &format!("{app}.localhost"),
        path,
        Duration::from_secs(20),
    )
    .2
}

fn push_ok(repo: &Repo, url: &str) -> String {
    let (ok, out) = repo.push(url, "main");
    assert!(ok, "push failed:\n{out}");
    out
}

fn releases(c: &TestCluster, app: &str) -> Vec<Value> {
    c.json(&["releases", "-a", app])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn git_push_of_each_kind_of_app_goes_live() {
    let (c, fe) = cluster("", 36000);
    let dir = tempdir();

    // A Python app with requirements.txt: the python buildpack, pip, a venv.
    let url = create(&c, "py");
    let repo = Repo::from_dir(&example("python-app"), &dir.path().join("py"));
    c.git_login(&repo.home);
    let out = push_ok(&repo, &url);
    for want in [
        "remote: -----> Python app detected",
        "remote: -----> Installing requirements with pip",
        "Successfully installed greeting-1.0",
        "remote: -----> Compressing slug:",
        "remote: -----> Released v1: web=1 running",
        "http://py.localhost:8080 deployed in",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert!(body(&fe, "py", "/").contains("from a pip-installed package (version 1)"));
    // The next push reuses the cached virtualenv and serves the new version.
    repo.write("VERSION", "2\n");
    let commit = repo.commit("v2");
    let out = push_ok(&repo, &url);
    assert!(out.contains("Reusing the cached virtualenv"), "{out}");
    assert!(body(&fe, "py", "/").contains("(version 2)"));
    let rels = releases(&c, "py");
    let v2 = rels.iter().find(|r| r["version"] == 2).expect("v2");
    assert_eq!(v2["build"]["commit"].as_str(), Some(commit.as_str()));
    assert_eq!(v2["build"]["buildpacks"][0], "Python");
    assert!(v2["build"]["build_ms"].as_u64().unwrap() > 0);
    assert!(v2["slug_size"].as_u64().unwrap() > 0);
    let table = c.cli_ok(&["releases", "-a", "py"]).unwrap();
    assert!(
        table.contains(&commit[..7]) && table.contains("Python"),
        "{table}"
    );

    // A static site: no process, served from the slug by the frontend.
    let url = create(&c, "site");
    let repo = Repo::from_dir(&example("static-site"), &dir.path().join("site"));
    c.git_login(&repo.home);
    let out = push_ok(&repo, &url);
    assert!(out.contains("Static site app detected"), "{out}");
    assert!(out.contains("no processes to run"), "{out}");
    assert!(body(&fe, "site", "/").contains("A static site on zeroku"));
    assert!(body(&fe, "site", "/style.css").contains("font-family"));
    assert!(c.ps("site").is_empty(), "a static site runs no process");
    repo.write("index.html", "<h1>second version</h1>\n");
    repo.commit("v2");
    push_ok(&repo, &url);
    assert!(body(&fe, "site", "/").contains("second version"));

    // A $PORT web app with only a Procfile.
    let url = create(&c, "web");
    let repo = Repo::from_dir(&example("python-web"), &dir.path().join("web"));
    c.git_login(&repo.home);
    let out = push_ok(&repo, &url);
    assert!(out.contains("Procfile app detected"), "{out}");
    assert!(body(&fe, "web", "/").contains("Hello from web.web.1"));

    // A Mongrel2-protocol handler: one handler starts by default.
    let url = create(&c, "chat");
    let repo = Repo::from_dir(&example("python-handler"), &dir.path().join("chat"));
    c.git_login(&repo.home);
    let out = push_ok(&repo, &url);
    assert!(out.contains("handler=1 running"), "{out}");
    assert!(body(&fe, "chat", "/hi").contains("Hello from chat.handler.1 at /hi"));

    // A shell worker: no HTTP; its log lines show the version.
    let url = create(&c, "jobs");
    let repo = Repo::from_dir(&example("shell-worker"), &dir.path().join("jobs"));
    c.git_login(&repo.home);
    push_ok(&repo, &url);
    c.cli_ok(&["ps:scale", "-a", "jobs", "worker=1"]).unwrap();
    c.wait_up("jobs", 1, Duration::from_secs(20));
    repo.write("VERSION", "2\n");
    repo.commit("v2");
    let out = push_ok(&repo, &url);
    assert!(out.contains("worker=1 running"), "{out}");
    eventually(Duration::from_secs(15), "worker 2 in the logs", || {
        let logs = c.cli_ok(&["logs", "-a", "jobs", "-n", "200"])?;
        if logs.contains("worker 2: working") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    // A Rust app: cargo build --release; no Procfile, bin/release declares web.
    let url = create(&c, "rs");
    let repo = Repo::from_dir(&example("rust-web"), &dir.path().join("rs"));
    c.git_login(&repo.home);
    let out = push_ok(&repo, &url);
    assert!(out.contains("remote: -----> Rust app detected"), "{out}");
    assert!(body(&fe, "rs", "/").contains("Hello from Rust (version 1)"));
    repo.write("VERSION", "2\n");
    repo.commit("v2");
    push_ok(&repo, &url);
    assert!(body(&fe, "rs", "/").contains("Hello from Rust (version 2)"));

    // The output of the last build is kept.
    let last = c.cli_ok(&["builds:output", "-a", "jobs"]).unwrap();
    assert!(last.contains("Procfile app detected"), "{last}");
}

#[test]
fn a_broken_push_is_rejected_and_the_old_version_keeps_serving() {
    let (c, fe) = cluster("", 36200);
    let dir = tempdir();
    let url = create(&c, "py");
    let repo = Repo::from_dir(&example("python-app"), &dir.path().join("py"));
    c.git_login(&repo.home);
    let good = repo.commit("good");
    push_ok(&repo, &url);
    assert!(body(&fe, "py", "/").contains("(version 1)"));

    // The build fails: pip cannot find a requirement.
    repo.write(
        "requirements.txt",
        "./vendor/missing-9.9-py3-none-any.whl\n",
    );
    repo.write("VERSION", "2\n");
    repo.commit("broken requirements");
    let (ok, out) = repo.push(&url, "main");
    assert!(!ok, "a failed build must reject the push:\n{out}");
    assert!(
        out.contains("missing-9.9-py3-none-any.whl"),
        "pip's error reaches the pusher:\n{out}"
    );
    assert!(out.contains("Build failed"), "{out}");
    assert!(out.contains("pre-receive hook declined"), "{out}");
    assert_eq!(releases(&c, "py").len(), 1, "no release was made");
    assert!(body(&fe, "py", "/").contains("(version 1)"));
    // The remote branch did not move.
    let remote = repo.git(&["ls-remote", &url, "refs/heads/main"]);
    assert!(String::from_utf8_lossy(&remote.stdout).starts_with(&good));

    // The build succeeds but the new version never starts: rolled back.
    repo.write(
        "requirements.txt",
        "./vendor/greeting-1.0-py3-none-any.whl\n",
    );
    repo.write("app.py", "import sys\nsys.exit('this version is broken')\n");
    repo.commit("crashes");
    let (ok, out) = repo.push(&url, "main");
    assert!(!ok, "{out}");
    assert!(out.contains("did not start"), "{out}");
    assert!(out.contains("rolled back to v1"), "{out}");
    assert!(body(&fe, "py", "/").contains("(version 1)"));
    let rels = releases(&c, "py");
    let newest = rels.iter().max_by_key(|r| r["version"].as_u64()).unwrap();
    assert_eq!(newest["description"], "Rollback to v1");
    c.wait_up("py", 1, Duration::from_secs(20));
}

#[test]
fn pushes_that_cannot_be_deployed_get_a_clear_message() {
    let (c, _fe) = cluster("", 36400);
    let dir = tempdir();
    let url = create(&c, "app");
    let repo = Repo::from_dir(&example("python-web"), &dir.path().join("app"));
    c.git_login(&repo.home);

    // A wrong token.
    c.git_login_as(&repo.home, "not-the-token");
    let (ok, out) = repo.push(&url, "main");
    assert!(!ok && out.contains("Authentication failed"), "{out}");
    c.git_login(&repo.home);
    // An unknown app.
    let (ok, out) = repo.push(&url.replace("/app.git", "/nope.git"), "main");
    assert!(!ok && out.contains("no app named \"nope\""), "{out}");
    // Another branch.
    let (ok, out) = repo.push(&url, "main:feature");
    assert!(!ok, "{out}");
    assert!(
        out.contains("zeroku deploys only the main or master branch"),
        "{out}"
    );
    assert!(out.contains("git push zeroku feature:main"), "{out}");
    // Nothing was released by any of that.
    assert!(releases(&c, "app").is_empty());
    // master works like main.
    let (ok, out) = repo.push(&url, "main:master");
    assert!(ok, "{out}");
}

#[test]
fn builds_are_bounded_in_size_time_and_memory() {
    let (c, _fe) = cluster("", 36600);
    let cfg = c.config_path();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[master]\n",
        "[master]\nbuild_max_source_mb = 2\nbuild_timeout_secs = 3\nbuild_memory_mb = 300\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let mut c = c;
    c.restart_master();
    let dir = tempdir();
    let url = create(&c, "big");
    let repo = Repo::from_dir(&example("python-web"), &dir.path().join("big"));
    c.git_login(&repo.home);
    // A source over the limit (random bytes: git cannot compress them away).
    let mut noise = vec![0u8; 3 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(repo.dir.join("big.bin"), &noise).unwrap();
    repo.commit("a big file");
    let (ok, out) = repo.push(&url, "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("pack exceeds maximum allowed size") || out.contains("over the limit"),
        "{out}"
    );
    // The same through `zeroku deploy`.
    let o = c.cli(&["deploy", "-a", "big", repo.dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("over the limit of 2 MB"), "{err}");

    // A build that outlives the time limit is killed.
    let slow = dir.path().join("slow");
    write_tree(&slow, &[("Procfile", "web: true\n")]);
    c.cli_ok(&["apps:create", "slow"]).unwrap();
    c.cli_ok(&[
        "config:set",
        "-a",
        "slow",
        &format!("BUILDPACK_URL={}", buildpack("slow")),
    ])
    .unwrap();
    let t = Instant::now();
    let o = c.cli(&["deploy", "-a", "slow", slow.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(out.contains("the build ran out of time"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());

    // A build that allocates more than it may fails, and says why.
    c.cli_ok(&["apps:create", "hog"]).unwrap();
    c.cli_ok(&[
        "config:set",
        "-a",
        "hog",
        &format!("BUILDPACK_URL={}", buildpack("hog")),
    ])
    .unwrap();
    let o = c.cli(&["deploy", "-a", "hog", slow.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(out.contains("the build ran out of memory"), "{out}");
    for app in ["big", "slow", "hog"] {
        assert!(releases(&c, app).is_empty(), "{app} got a release");
    }
    // And the master is fine: a normal deploy still works.
    let o = c.cli(&[
        "deploy",
        "-a",
        "slow",
        &example("python-web").to_string_lossy(),
    ]);
    assert!(
        !o.status.success(),
        "BUILDPACK_URL still names the slow buildpack"
    );
    c.cli_ok(&["config:unset", "-a", "slow", "BUILDPACK_URL"])
        .unwrap();
    c.cli_ok(&[
        "deploy",
        "-a",
        "slow",
        &example("python-web").to_string_lossy(),
    ])
    .unwrap();
}

#[test]
fn third_party_buildpacks_follow_the_heroku_api() {
    let (c, fe) = cluster("", 36800);
    let dir = tempdir();
    let url = create(&c, "conf");
    c.cli_ok(&["config:set", "-a", "conf", "GREETING=hello from ENV_DIR"])
        .unwrap();
    let repo = Repo::init(&dir.path().join("conf"));
    c.git_login(&repo.home);
    repo.write("conformance.txt", "marker for bin/detect\n");
    repo.write(
        ".buildpacks",
        &format!("{}\n{}\n", buildpack("first"), buildpack("second")),
    );
    repo.commit("first");
    let out = push_ok(&repo, &url);
    assert!(
        out.contains("remote: -----> Conformance first app detected"),
        "{out}"
    );
    assert!(out.contains("remote: -----> first: compiling"), "{out}");
    assert!(
        out.contains("remote:        built 1 time(s) with this cache"),
        "{out}"
    );
    assert!(
        out.contains("second: FIRST_EXPORTED=exported by first"),
        "{out}"
    );
    let v: Value = serde_json::from_str(&body(&fe, "conf", "/")).unwrap();
    assert_eq!(
        v["greeting"], "hello from ENV_DIR",
        "ENV_DIR holds config vars"
    );
    assert_eq!(
        v["greeting_in_env"], "unset",
        "config vars are not in compile's environment"
    );
    assert!(v["env_files"]
        .as_array()
        .unwrap()
        .contains(&"GREETING".into()));
    assert_eq!(
        v["from_first"], "exported by first",
        "export is sourced before the next buildpack"
    );
    assert_eq!(v["from_profile"], "sourced from .profile.d");
    assert_eq!(v["build_count"], "1");
    // bin/release declared web: it runs without a Procfile.
    let rels = releases(&c, "conf");
    assert_eq!(rels[0]["process_types"]["web"], "python3 serve.py");
    assert_eq!(
        rels[0]["build"]["buildpacks"],
        serde_json::json!(["Conformance first", "Conformance second"])
    );
    // The cache survives to the next build.
    repo.commit("again");
    push_ok(&repo, &url);
    eventually(Duration::from_secs(20), "second build serving", || {
        let v: Value = serde_json::from_str(&body(&fe, "conf", "/")).map_err(|e| e.to_string())?;
        if v["build_count"] == "2" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });

    // BUILDPACK_URL naming a git repository.
    let bp_repo = Repo::from_dir(Path::new(&buildpack("first")), &dir.path().join("bp.git"));
    let url2 = create(&c, "conf2");
    c.cli_ok(&[
        "config:set",
        "-a",
        "conf2",
        &format!("BUILDPACK_URL=file://{}", bp_repo.dir.display()),
    ])
    .unwrap();
    let repo2 = Repo::init(&dir.path().join("conf2"));
    c.git_login(&repo2.home);
    repo2.write("conformance.txt", "x\n");
    repo2.commit("first");
    let out = push_ok(&repo2, &url2);
    assert!(out.contains("Fetching buildpack file://"), "{out}");
    assert!(out.contains("Conformance first app detected"), "{out}");

    // Nothing applies: the error lists what was tried.
    let url3 = create(&c, "nothing");
    let repo3 = Repo::init(&dir.path().join("nothing"));
    c.git_login(&repo3.home);
    repo3.write("notes.txt", "no Procfile, no index.html, no requirements\n");
    repo3.commit("first");
    let (ok, out) = repo3.push(&url3, "main");
    assert!(!ok);
    assert!(
        out.contains("no buildpack applies to this app (tried: python, rust, static, procfile)"),
        "{out}"
    );
}

#[test]
fn deploy_without_git_and_the_release_phase() {
    let (c, fe) = cluster("", 37000);
    let dir = tempdir();
    c.cli_ok(&["apps:create", "up"]).unwrap();
    c.cli_ok(&["config:set", "-a", "up", "GREETING=hi"])
        .unwrap();
    let src = dir.path().join("up");
    write_tree(
        &src,
        &[
            (
                "Procfile",
                "web: python3 -m http.server $PORT\nrelease: echo \"release phase ran with GREETING=$GREETING\"\n",
            ),
            ("index.html", "uploaded v1\n"),
        ],
    );
    let out = c
        .cli_ok(&["deploy", "-a", "up", src.to_str().unwrap()])
        .unwrap();
    assert!(out.contains("release phase ran with GREETING=hi"), "{out}");
    assert!(body(&fe, "up", "/").contains("uploaded v1"));
    let rels = releases(&c, "up");
    assert!(rels[0]["process_types"].get("release").is_none());
    assert!(rels[0]["build"]["commit"].is_null());
    // A tarball works too.
    std::fs::write(src.join("index.html"), "uploaded v2\n").unwrap();
    let tarball = dir.path().join("up.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    c.cli_ok(&["deploy", "-a", "up", tarball.to_str().unwrap()])
        .unwrap();
    assert!(body(&fe, "up", "/").contains("uploaded v2"));
    // A failing release phase stops the release.
    std::fs::write(
        src.join("Procfile"),
        "web: python3 -m http.server $PORT\nrelease: echo migration failed; exit 1\n",
    )
    .unwrap();
    std::fs::write(src.join("index.html"), "uploaded v3\n").unwrap();
    let o = c.cli(&["deploy", "-a", "up", src.to_str().unwrap()]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("migration failed"), "{out}");
    assert!(out.contains("release phase failed"), "{out}");
    assert_eq!(releases(&c, "up").len(), 2);
    assert!(body(&fe, "up", "/").contains("uploaded v2"));
    // A source with paths that leave the build directory is refused.
    let evil = dir.path().join("evil.tar");
    let st = std::process::Command::new("tar")
        .arg("cf")
        .arg(&evil)
        .arg("-P")
        .arg("--transform=s,^.*index.html,../escape.html,")
        .arg(src.join("index.html"))
        .status()
        .unwrap();
    assert!(st.success());
    let o = c.cli(&["deploy", "-a", "up", evil.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success());
    assert!(out.contains("leaves the source directory"), "{out}");
}

#[test]
fn two_deploys_of_one_app_queue() {
    let (c, fe) = cluster("", 37800);
    let dir = tempdir();
    c.cli_ok(&["apps:create", "q"]).unwrap();
    let srcs: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let src = dir.path().join(format!("q{i}"));
            write_tree(
                &src,
                &[
                    // The first build takes a while, so the second arrives during it.
                    (
                        "Procfile",
                        "web: python3 -m http.server $PORT\nrelease: sleep 2\n",
                    ),
                    ("index.html", &format!("deploy {i}\n")),
                ],
            );
            src
        })
        .collect();
    let (url, token) = (c.master.url.clone(), c.master.token.clone());
    let run = |src: PathBuf| {
        let (url, token) = (url.clone(), token.clone());
        std::thread::spawn(move || {
            std::process::Command::new(bin())
                .args(["deploy", "-a", "q", src.to_str().unwrap()])
                .env("ZEROKU_URL", url)
                .env("ZEROKU_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let first = run(srcs[0].clone());
    std::thread::sleep(Duration::from_millis(700));
    let second = run(srcs[1].clone());
    let (a, b) = (first.join().unwrap(), second.join().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let out = String::from_utf8_lossy(&b.stdout);
    assert!(
        out.contains("Another build of this app is running; waiting for it"),
        "{out}"
    );
    assert!(out.contains("Released v2"), "{out}");
    let rels = releases(&c, "q");
    assert_eq!(rels.len(), 2);
    assert!(body(&fe, "q", "/").contains("deploy 2"));
}

/// Sends requests one after another until `stop`; returns (ok, failures).
fn load(
    fe: String,
    host: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut ok, mut bad) = (0u64, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match http_get(&fe, &host, "/") {
                Ok((200, _, _)) => ok += 1,
                Ok((st, _, b)) => bad.push(format!("{st}: {}", b.trim())),
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    })
}

#[test]
fn a_deploy_under_load_loses_no_request() {
    let (c, fe) = cluster("", 37200);
    let dir = tempdir();
    let web_url = create(&c, "web");
    let web = Repo::from_dir(&example("python-app"), &dir.path().join("web"));
    c.git_login(&web.home);
    push_ok(&web, &web_url);
    c.cli_ok(&["ps:scale", "-a", "web", "web=2"]).unwrap();
    c.wait_up("web", 2, Duration::from_secs(20));
    let chat_url = create(&c, "chat");
    let chat = Repo::from_dir(&example("python-handler"), &dir.path().join("chat"));
    c.git_login(&chat.home);
    push_ok(&chat, &chat_url);
    body(&fe, "chat", "/");
    body(&fe, "web", "/");

    let stop = Arc::new(AtomicBool::new(false));
    let loads = vec![
        load(fe.clone(), "web.localhost".into(), stop.clone()),
        load(fe.clone(), "chat.localhost".into(), stop.clone()),
    ];
    std::thread::sleep(Duration::from_millis(500));
    web.write("VERSION", "2\n");
    web.commit("v2");
    push_ok(&web, &web_url);
    chat.write("README.md", "v2\n");
    chat.commit("v2");
    push_ok(&chat, &chat_url);
    // Until the old processes have drained and stopped.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for (name, l) in ["web", "chat"].iter().zip(loads) {
        let (ok, bad) = l.join().unwrap();
        assert!(ok > 20, "{name}: only {ok} requests");
        assert!(
            bad.is_empty(),
            "{name}: {} of {} failed: {:?}",
            bad.len(),
            ok as usize + bad.len(),
            &bad[..bad.len().min(5)]
        );
    }
    assert!(body(&fe, "web", "/").contains("(version 2)"));
}

/// sshd, on a free loopback port, reading the master's authorized_keys.
struct Sshd(std::process::Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &Path, comment: &str) {
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(st.success());
}

#[test]
fn git_push_over_ssh_runs_only_the_forced_command() {
    let (c, fe) = cluster("", 37400);
    let dir = tempdir();
    let d = dir.path();
    keygen(&d.join("id"), "tester@laptop");
    keygen(&d.join("other"), "stranger@elsewhere");
    keygen(&d.join("host"), "host");
    let out = c
        .cli_ok(&["keys:add", d.join("id.pub").to_str().unwrap()])
        .unwrap();
    assert!(out.contains("Added key tester"), "{out}");
    assert!(out.contains("restrict,command=\""), "{out}");
    assert!(c.cli_ok(&["keys"]).unwrap().contains("SHA256:"));
    // The same key twice is refused.
    let o = c.cli(&[
        "keys:add",
        "--name",
        "again",
        d.join("id.pub").to_str().unwrap(),
    ]);
    assert!(!o.status.success());

    let port = free_port();
    let keys_file = c.master.data.join("ssh/authorized_keys");
    let cfg = d.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            d.join("host").display(),
            keys_file.display(),
            d.join("sshd.pid").display()
        ),
    )
    .unwrap();
    let _ = std::fs::create_dir_all("/run/sshd");
    let log = std::fs::File::create(d.join("sshd.log")).unwrap();
    let _sshd = Sshd(
        std::process::Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stderr(log)
            .spawn()
            .expect("sshd (openssh-server, installed by scripts/deps.sh)"),
    );
    eventually(Duration::from_secs(10), "sshd listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let user = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let ssh = |key: &str| {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -p {port}",
            d.join(key).display()
        )
    };

    c.cli_ok(&["apps:create", "viassh"]).unwrap();
    let repo = Repo::from_dir(&example("python-app"), &d.join("viassh"));
    c.git_login(&repo.home);
    let url = format!("ssh://{user}@127.0.0.1:{port}/viassh.git");
    let o = repo.git_with(&["push", &url, "main"], &[("GIT_SSH_COMMAND", &ssh("id"))]);
    let text = String::from_utf8_lossy(&o.stderr);
    let sshd_log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
    assert!(o.status.success(), "{text}\nsshd:\n{sshd_log}");
    assert!(text.contains("remote: -----> Released v1"), "{text}");
    assert!(body(&fe, "viassh", "/").contains("(version 1)"));
    // A second push, a fetch back: both through the forced command.
    repo.write("VERSION", "2\n");
    repo.commit("v2");
    let o = repo.git_with(&["push", &url, "main"], &[("GIT_SSH_COMMAND", &ssh("id"))]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = repo.git_with(&["ls-remote", &url], &[("GIT_SSH_COMMAND", &ssh("id"))]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("refs/heads/main"));

    // The key gives no shell.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} {user}@127.0.0.1 id", ssh("id")))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only allows git push and fetch"), "{err}");
    // A key that was not added cannot push.
    let o = repo.git_with(
        &["push", &url, "main"],
        &[("GIT_SSH_COMMAND", &ssh("other"))],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    // Nor can one that was removed.
    c.cli_ok(&["keys:remove", "tester"]).unwrap();
    let o = repo.git_with(&["ls-remote", &url], &[("GIT_SSH_COMMAND", &ssh("id"))]);
    assert!(!o.status.success());
}

#[test]
fn a_health_check_path_gates_the_switch() {
    let (c, fe) = cluster("deploy_timeout_secs = 6\n", 37600);
    let dir = tempdir();
    let app = r#"
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
VERSION = open("VERSION").read().strip()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        healthy = VERSION != "sick"
        status = 200 if self.path != "/health" or healthy else 503
        body = ("version %s\n" % VERSION).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"#;
    let url = create(&c, "checked");
    c.cli_ok(&["config:set", "-a", "checked", "HEALTHCHECK_PATH=/health"])
        .unwrap();
    let repo = Repo::init(&dir.path().join("checked"));
    c.git_login(&repo.home);
    repo.write("Procfile", "web: python3 app.py\n");
    repo.write("app.py", app);
    repo.write("VERSION", "1\n");
    repo.commit("v1");
    push_ok(&repo, &url);
    assert!(body(&fe, "checked", "/").contains("version 1"));
    // This version accepts connections but fails its health check: it
    // never takes traffic, and the deploy is rolled back.
    repo.write("VERSION", "sick\n");
    repo.commit("sick");
    let (ok, out) = repo.push(&url, "main");
    assert!(!ok, "{out}");
    assert!(out.contains("were not up after 6 s"), "{out}");
    assert!(out.contains("rolled back"), "{out}");
    for _ in 0..10 {
        assert!(body(&fe, "checked", "/").contains("version 1"));
    }
}

#[test]
fn a_push_with_a_1_gb_file_is_refused_and_changes_nothing() {
    let (c, fe) = cluster("", 38000);
    let dir = tempdir();
    let url = create(&c, "huge");
    let repo = Repo::from_dir(&example("static-site"), &dir.path().join("huge"));
    c.git_login(&repo.home);
    push_ok(&repo, &url);
    // A 1 GB file (sparse: zeros, which git compresses to almost nothing,
    // so only the unpacked source is over the 512 MB default limit).
    let f = std::fs::File::create(repo.dir.join("disk.img")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    repo.write("index.html", "<h1>with a huge file</h1>\n");
    repo.commit("1 GB");
    let (ok, out) = repo.push(&url, "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("the source is over the limit of 512 MB"),
        "{out}"
    );
    assert_eq!(releases(&c, "huge").len(), 1);
    assert!(body(&fe, "huge", "/").contains("A static site on zeroku"));
    // Nothing of it is left in the master's data directory.
    let incoming = c.master.data.join("builds/incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}
