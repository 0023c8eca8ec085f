//! Driving real `git` as a user would: a work tree, commits, pushes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A git work tree in a temp directory, with its own HOME so no user or
/// system config leaks in.
pub struct Repo {
    pub dir: PathBuf,
    pub home: PathBuf,
}

impl Repo {
    /// `git init` in `dir` (created), branch main.
    pub fn init(dir: &Path) -> Repo {
        std::fs::create_dir_all(dir).expect("mkdir repo");
        let home = dir.with_extension("home");
        std::fs::create_dir_all(&home).expect("mkdir home");
        let r = Repo {
            dir: dir.to_path_buf(),
            home,
        };
        r.ok(&["init", "-q", "-b", "main"]);
        r
    }

    /// A copy of `src` (a directory of the repository, e.g. an example),
    /// committed.
    pub fn from_dir(src: &Path, dir: &Path) -> Repo {
        std::fs::create_dir_all(dir).expect("mkdir");
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(dir)
            .status()
            .expect("cp");
        assert!(st.success(), "copy {}", src.display());
        let r = Repo::init(dir);
        r.commit("first");
        r
    }

    pub fn git(&self, args: &[&str]) -> std::process::Output {
        self.git_with(args, &[])
    }

    /// git with extra environment (e.g. `GIT_SSH_COMMAND`).
    pub fn git_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        Command::new("git")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.test")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.test")
            .output()
            .expect("run git")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.git(args);
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Writes a file (relative path) in the work tree.
    pub fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// `git add -A && git commit`; returns the new commit.
    pub fn commit(&self, msg: &str) -> String {
        self.ok(&["add", "-A"]);
        self.ok(&["commit", "-q", "--allow-empty", "-m", msg]);
        self.ok(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// `git push URL REFSPEC`: (succeeded, everything git printed).
    pub fn push(&self, url: &str, refspec: &str) -> (bool, String) {
        let o = self.git(&["push", url, refspec]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    }
}
