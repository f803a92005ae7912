//! The bridge under test: a release `clerk-bridge serve` child process on loopback port-0 listeners
//! (addresses read from its `Listening` log line), optionally pinned to one CPU, and its memory as
//! the kernel reports it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, ChildStderr, Command},
};

use crate::BenchError;

/// The signing secret the bridge and the load generator share.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Builds the release binary beside this example (a no-op when it is up to date) and returns its
/// path. Uses the `cargo` that runs this example.
pub(crate) fn build_release() -> Result<PathBuf, BenchError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "clerk-bridge"])
        .status()?;
    if !status.success() {
        return Err(BenchError::Setup("cargo build --release failed".into()));
    }
    // This example lives in target/release/examples/, the binary in target/release/.
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("clerk-bridge"))
        .ok_or_else(|| BenchError::Setup("cannot locate target/release".into()))?;
    if !bin.exists() {
        return Err(BenchError::Setup(format!("{} is missing", bin.display())));
    }
    Ok(bin)
}

/// A `clerk-bridge serve` process this benchmark started and owns.
#[derive(Debug)]
pub(crate) struct Bridge {
    /// The child; killed when dropped.
    child: Child,
    /// Its process id: `/proc/<pid>/` reports its memory and CPU time.
    pid: u32,
    /// Its webhook listener: loopback, on the port the kernel chose (read from its log).
    pub(crate) http: SocketAddr,
    /// Its gRPC listener, found the same way.
    pub(crate) grpc: SocketAddr,
}

/// Resident memory of the bridge, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// Resident now (`VmRSS`).
    pub(crate) rss_kib: u64,
    /// Highest resident since start or the last [`Bridge::reset_peak`] (`VmHWM`).
    pub(crate) peak_kib: u64,
}

// === impl Bridge ===

impl Bridge {
    /// Starts `bin serve` on `data_dir`, under `taskset -c cpu` when `cpu` is given, and waits
    /// until it listens.
    pub(crate) async fn start(
        bin: &Path,
        data_dir: &Path,
        cpu: Option<usize>,
    ) -> Result<Self, BenchError> {
        Self::start_with(bin, data_dir, cpu, &[]).await
    }

    /// As [`Bridge::start`], with `extra` flags (such as the JetStream store's).
    pub(crate) async fn start_with(
        bin: &Path,
        data_dir: &Path,
        cpu: Option<usize>,
        extra: &[&str],
    ) -> Result<Self, BenchError> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .env_clear()
            .env("CLERK_WEBHOOK_SIGNING_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .args(["serve", "--http-addr", "127.0.0.1:0"])
            .args(["--grpc-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Setup("the bridge exited at once".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| BenchError::Setup("no stderr pipe".into()))?;
        let (http, grpc) = listening_addrs(stderr).await?;
        Ok(Bridge {
            child,
            pid,
            http,
            grpc,
        })
    }

    /// Its memory now, from `/proc/<pid>/status`.
    pub(crate) fn memory(&self) -> Result<Memory, BenchError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| BenchError::Setup(format!("no {key} in /proc/PID/status")))
        };
        Ok(Memory {
            rss_kib: kib("VmRSS:")?,
            peak_kib: kib("VmHWM:")?,
        })
    }

    /// CPU time the bridge has used so far, all threads.
    pub(crate) fn cpu_time(&self) -> Result<Duration, BenchError> {
        process_cpu_time(self.pid)
    }

    /// Resets the peak (`VmHWM`) to the current RSS, so the next [`Bridge::memory`] reports the
    /// peak of what ran in between (`/proc/PID/clear_refs`, Linux 4.0+).
    pub(crate) fn reset_peak(&self) -> Result<(), BenchError> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")?;
        Ok(())
    }

    /// The value of the gauge or counter `name` on the bridge's `/metrics` page (on its webhook
    /// port, the default).
    pub(crate) async fn metric(&self, name: &str) -> Result<f64, BenchError> {
        let mut connection = TcpStream::connect(self.http).await?;
        let request = "GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n";
        connection.write_all(request.as_bytes()).await?;
        let mut page = String::new();
        connection.read_to_string(&mut page).await?;
        page.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|value| value.trim().parse().ok())
            .ok_or_else(|| BenchError::Setup(format!("no {name} on the bridge's /metrics")))
    }

    /// Stops the bridge (SIGKILL: durability does not depend on a clean stop) and reaps it.
    pub(crate) async fn stop(mut self) -> Result<(), BenchError> {
        self.child.kill().await?;
        Ok(())
    }
}

/// CPU time process `pid` has used so far, all threads (`utime + stime` of `/proc/PID/stat`).
pub(crate) fn process_cpu_time(pid: u32) -> Result<Duration, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces); utime and
    // stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_sec(),
    ))
}

/// The kernel's clock tick rate for CPU times (`getconf CLK_TCK`; 100 on Linux by default).
fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Reads the bridge's log until its `Listening` line, then keeps draining it in the background so
/// the pipe never fills.
async fn listening_addrs(stderr: ChildStderr) -> Result<(SocketAddr, SocketAddr), BenchError> {
    let mut lines = BufReader::new(stderr).lines();
    let addrs = loop {
        let Some(line) = lines.next_line().await? else {
            return Err(BenchError::Setup(
                "the bridge exited before listening".into(),
            ));
        };
        if line.contains("Listening") {
            break (field(&line, "http=")?, field(&line, "grpc=")?);
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(addrs)
}

/// The address after `key` in a log line.
fn field(line: &str, key: &str) -> Result<SocketAddr, BenchError> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key))
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| BenchError::Setup(format!("no {key} address in {line:?}")))
}

/// The CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-1` or `0,2-3`).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    list.trim()
        .split(',')
        .flat_map(|range| -> Vec<usize> {
            match range.split_once('-') {
                Some((a, b)) => match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) => (a..=b).collect(),
                    _ => Vec::new(),
                },
                None => range.parse().into_iter().collect(),
            }
        })
        .collect()
}

/// Pins every thread of this process to `cpu` with `taskset -a -p`; threads started later inherit
/// it. Returns whether it worked.
pub(crate) fn pin_self(cpu: usize) -> bool {
    std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The path of a fresh data directory for the bridge under `parent`.
pub(crate) fn data_dir_in(parent: &Path) -> Result<tempfile::TempDir, BenchError> {
    std::fs::create_dir_all(parent)?;
    Ok(tempfile::Builder::new()
        .prefix("clerk-bridge-bench-")
        .tempdir_in(parent)?)
}
