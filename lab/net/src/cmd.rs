//! Running iproute2: one `ip [-n NETNS] -batch -` process per namespace and change set, so thousands of
//! addresses or routes cost one process instead of thousands (frr-lab.md §6: 33 ms for 1,000 /32s).

use std::io::Write;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// Path of the `ip` binary.
pub const IP: &str = "ip";

fn describe(netns: Option<&str>) -> String {
    match netns {
        Some(n) => format!("ip -n {n} -batch -"),
        None => "ip -batch -".to_string(),
    }
}

/// The error for a `command` that could not run or failed, with what went wrong.
fn command_failed(command: &str, detail: impl std::fmt::Display) -> Error {
    Error::Command {
        command: command.to_string(),
        detail: detail.to_string(),
    }
}

fn args(netns: Option<&str>, force: bool) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(n) = netns {
        a.push("-n".to_string());
        a.push(n.to_string());
    }
    if force {
        a.push("-force".to_string());
    }
    a.push("-batch".to_string());
    a.push("-".to_string());
    a
}

/// Runs a batch synchronously; fails at the first failing line (used by topology teardown).
pub fn run_ip_batch_sync(netns: Option<&str>, batch: &str) -> Result<()> {
    let command = describe(netns);
    let mut child = std::process::Command::new(IP)
        .args(args(netns, true))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| command_failed(&command, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| command_failed(&command, format_args!("writing the batch: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| command_failed(&command, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(command_failed(
            &command,
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

/// The outcome of a `-force` batch: which 1-based lines failed, with iproute2's message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub failed_lines: Vec<(usize, String)>,
}

/// Runs a batch asynchronously. With `force`, every line is tried and failures are returned per line;
/// without it, the first failure is an error.
pub async fn run_ip_batch(netns: Option<&str>, batch: &str, force: bool) -> Result<BatchOutcome> {
    let command = describe(netns);
    let mut child = tokio::process::Command::new(IP)
        .args(args(netns, force))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| command_failed(&command, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .await
            .map_err(|e| command_failed(&command, format_args!("writing the batch: {e}")))?;
        // Dropping stdin closes it so `ip` sees the end of the batch.
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| command_failed(&command, e))?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !force {
        return if out.status.success() {
            Ok(BatchOutcome::default())
        } else {
            Err(command_failed(&command, stderr.trim()))
        };
    }
    Ok(BatchOutcome {
        failed_lines: parse_failed_lines(&stderr),
    })
}

/// iproute2 reports a failed batch line as `Command failed -:<line>` after the error message.
fn parse_failed_lines(stderr: &str) -> Vec<(usize, String)> {
    let mut failed = Vec::new();
    let mut message = String::new();
    for line in stderr.lines() {
        if let Some(n) = line.strip_prefix("Command failed -:") {
            if let Ok(n) = n.trim().parse::<usize>() {
                failed.push((n, std::mem::take(&mut message)));
            }
        } else {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(line.trim());
        }
    }
    failed
}

/// Runs a program to completion, failing on a non-zero exit (used for daemon starts).
pub async fn run(program: &str, args: &[String]) -> Result<()> {
    output(program, args).await.map(drop)
}

/// Runs a program to completion and returns its standard output, failing on a non-zero exit.
pub async fn output(program: &str, args: &[String]) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| command_failed(&command, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
            detail: format!(
                "{}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_batch_lines_are_attributed() {
        let stderr = "Error: ipv4: Address already assigned.\nCommand failed -:2\nRTNETLINK answers: No such process\nCommand failed -:5\n";
        assert_eq!(
            parse_failed_lines(stderr),
            vec![
                (2, "Error: ipv4: Address already assigned.".to_string()),
                (5, "RTNETLINK answers: No such process".to_string())
            ]
        );
    }
}
