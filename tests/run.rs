//! `zeroku run`: one-off instances of the current release, with the
//! command's output and exit code, or detached with output in the logs.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn one_off_commands_run_once_with_their_output_and_exit_code() {
    let mut c = TestCluster::start();
    c.add_worker("r1", 38600);
    c.cli_ok(&["apps:create", "empty"]).unwrap();
    let o = c.cli(&["run", "-a", "empty", "--", "true"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no release to run from"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    c.deploy(
        "jobs",
        &[
            ("Procfile", "worker: sleep 1000\n"),
            (
                "bin/task",
                "#!/bin/sh\necho \"task $1 with $GREETING\"\necho \"a warning\" >&2\nexit 3\n",
            ),
        ],
    );
    c.cli_ok(&["config:set", "-a", "jobs", "GREETING=config"])
        .unwrap();
    // Attached: output as it comes, the command's exit code.
    let o = c.cli(&["run", "-a", "jobs", "--", "bin/task", "one"]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(out.contains("task one with config"), "{out}{err}");
    // stderr comes along, in order (the log keeps one stream per process).
    assert!(out.contains("a warning"), "{out}");
    let o = c.cli(&["run", "-a", "jobs", "--", "echo", "fine", "-n"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("fine -n"));
    // Arguments arrive as given, quotes and all; one argument is a command line.
    let o = c.cli(&[
        "run",
        "-a",
        "jobs",
        "--",
        "sh",
        "-c",
        "echo \"it's $((6 * 7))\"; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stdout).contains("it's 42"));
    let o = c.cli(&["run", "-a", "jobs", "--", "echo one && echo two"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("one") && out.contains("two"), "{out}");
    // One-offs are not restarted and do not stay in ps.
    assert!(c.ps("jobs").iter().all(|p| p["type"] != "run"));
    let runs = c.json(&["ps", "-a", "jobs"]);
    assert!(!runs.to_string().contains("jobs.run."), "{runs}");

    // Detached: returns at once; the output is in the logs.
    let out = c
        .cli_ok(&[
            "run",
            "-a",
            "jobs",
            "--detach",
            "--",
            "sh",
            "-c",
            "sleep 1; echo detached-done",
        ])
        .unwrap();
    assert!(out.contains("as jobs.run.5"), "{out}");
    eventually(Duration::from_secs(20), "the detached output", || {
        let logs = c.cli_ok(&["logs", "-a", "jobs", "-n", "200"])?;
        if logs.contains("app[jobs.run.5]") && logs.contains("detached-done") {
            Ok(())
        } else {
            Err(logs)
        }
    });
}
