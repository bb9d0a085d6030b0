//! Test support (feature `testing`): a real S3-compatible server, moto, on 127.0.0.1.
//!
//! ```no_run
//! # async fn demo() {
//! use lens_store::testing::MotoServer;
//! let moto = MotoServer::start(); // panics, saying to run scripts/setup.sh, when moto is missing
//! let cfg = moto.s3_config("test-bucket");
//! lens_store::S3BlobStore::create_bucket_if_missing(&cfg).await.unwrap();
//! let store = lens_store::S3BlobStore::connect(cfg).await.unwrap();
//! # }
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::S3Config;

/// Access key moto accepts (any is accepted; fixed so URLs are reproducible).
pub const MOTO_ACCESS_KEY: &str = "lens-testing";
pub const MOTO_SECRET_KEY: &str = "lens-testing-secret";

/// A `moto_server` child process, killed on drop.
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    child: Child,
    log: PathBuf,
}

impl MotoServer {
    /// Starts `moto_server` on a free port of 127.0.0.1 and waits until it answers.
    ///
    /// Finds the program through `LENS_MOTO_SERVER` (a path), else `PATH`, else
    /// `$LENS_TOOLS_DIR/bin`, else `~/.cache/lens-tools/bin`. Panics when it is not found
    /// (run `scripts/setup.sh`) or does not come up within 60 s.
    pub fn start() -> MotoServer {
        let program = find_moto_server().unwrap_or_else(|| {
            panic!(
                "moto_server not found (looked at $LENS_MOTO_SERVER, PATH, $LENS_TOOLS_DIR/bin and \
                 ~/.cache/lens-tools/bin): run scripts/setup.sh to install it"
            )
        });
        let mut last_failure = String::new();
        // A port found free can be taken before moto binds it: try a few.
        for _ in 0..3 {
            match Self::try_start(&program) {
                Ok(server) => return server,
                Err(e) => last_failure = e,
            }
        }
        panic!("{} did not start: {last_failure}", program.display());
    }

    fn try_start(program: &Path) -> Result<MotoServer, String> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?
            .port();
        // moto logs every request: into a file, since an unread pipe would block it.
        let log = std::env::temp_dir().join(format!("lens-moto-{}-{port}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let stderr = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let mut server = MotoServer { endpoint: format!("http://127.0.0.1:{port}"), child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("it exited ({status}); its output:\n{}", server.output()));
            }
            if answers(port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on port {port} after 60 s; its output:\n{}", server.output()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An [`S3Config`] for `bucket` on this server (path style, us-east-1, test credentials).
    pub fn s3_config(&self, bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_string(),
            region: Some("us-east-1".to_string()),
            endpoint_url: Some(self.endpoint.clone()),
            force_path_style: true,
            prefix: String::new(),
            credentials: Some((MOTO_ACCESS_KEY.to_string(), MOTO_SECRET_KEY.to_string())),
        }
    }

    /// What the server printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether an HTTP server answers on 127.0.0.1:`port`.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

fn find_moto_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LENS_MOTO_SERVER") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!("LENS_MOTO_SERVER={} is not a file: run scripts/setup.sh or fix it", path.display());
        }
        return Some(path);
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(tools) = std::env::var_os("LENS_TOOLS_DIR") {
        dirs.push(PathBuf::from(tools).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/lens-tools/bin"));
    }
    dirs.into_iter().map(|d| d.join("moto_server")).find(|p| p.is_file())
}
