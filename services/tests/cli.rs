//! The `gatehouse` binary's command line, without any server: help, the bench scenario list,
//! and the exit code of a usage error. (Building this test also builds the binary, which the
//! `activation` benchmark starts as worker processes.)

use std::process::{Command, Output};

fn gatehouse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("NATS_URL", "nats://127.0.0.1:1")
        .output()
        .expect("the gatehouse binary runs")
}

#[test]
fn help_lists_every_role_and_tool() {
    let out = gatehouse(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in [
        "up",
        "gateway",
        "relay",
        "worker",
        "notifier",
        "projector",
        "flag-monitor",
        "flag",
        "safe-mode",
        "bench",
    ] {
        assert!(text.contains(command), "`{command}` missing from:\n{text}");
    }
}

#[test]
fn bench_list_names_every_scenario() {
    let out = gatehouse(&["bench", "list"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for scenario in ["commands", "ingest", "activation", "delivery", "rebuild"] {
        assert!(
            text.contains(scenario),
            "`{scenario}` missing from:\n{text}"
        );
    }
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let out = gatehouse(&["promote-everything"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("promote-everything"));
}

/// `gatehouse ... | head -1`: once the reader is gone, the CLI stops quietly with exit code 0
/// instead of panicking with a backtrace.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // The reader is gone before the CLI writes its first line.
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["projections", "list"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("RUST_BACKTRACE", "1")
        .stdout(writer)
        .output()
        .expect("the gatehouse binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
