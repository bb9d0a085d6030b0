//! Test support for `lens serve` as a process: the real binary on 127.0.0.1 with a fixture model and a
//! temporary data directory, driven over HTTP — for what only a process shows (start-up, signals,
//! kill -9, S3 from the binary's environment).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::files::fixture_model;

/// A running `lens serve`. Killed (SIGKILL) on drop if still running.
pub struct Server {
    child: Child,
    pub base: String,
    pub data: PathBuf,
    model: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::blocking::Client,
}

impl Server {
    /// Starts `lens serve --model <fixture> --data <data> --listen 127.0.0.1:0 <extra>` and waits for /readyz.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data, extra, &[])
    }

    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn(&fixture_model(), data, args, env)
    }

    /// With another model directory.
    pub fn start_model(model: &Path, data: &Path, extra: &[&str]) -> Server {
        Self::spawn(model, data, extra.iter().map(|s| s.to_string()).collect(), vec![])
    }

    /// Any model, flags and environment.
    pub fn spawn(model: &Path, data: &Path, args: Vec<String>, env: Vec<(String, String)>) -> Server {
        Self::spawn_command(Command::new(env!("CARGO_BIN_EXE_lens")), model, data, args, env)
    }

    /// The fixture model and `extra` flags, with at most `files` open files (soft and hard limit).
    pub fn start_with_file_limit(data: &Path, extra: &[&str], files: u64) -> Server {
        let mut command = Command::new("prlimit");
        command.arg(format!("--nofile={files}:{files}")).arg("--").arg(env!("CARGO_BIN_EXE_lens"));
        Self::spawn_command(command, &fixture_model(), data, extra.iter().map(|s| s.to_string()).collect(), vec![])
    }

    fn spawn_command(
        mut command: Command,
        model: &Path,
        data: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Server {
        command
            .arg("serve")
            .arg("--model")
            .arg(model)
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .env("LENS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("lens serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["fields"]["message"] == "listening"
                    {
                        let _ = addr_tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_string());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => panic!("lens serve did not start listening; log:\n{}", log.lock().unwrap().join("\n")),
        };
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let server = Server {
            child,
            base: format!("http://{addr}"),
            data: data.to_path_buf(),
            model: model.to_path_buf(),
            args,
            env,
            log,
            http,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send()
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "lens serve not ready after 120 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Same data directory and flags, new process.
    pub fn restart(mut self) -> Server {
        self.stop();
        let (model, data, args, env) =
            (self.model.clone(), self.data.clone(), std::mem::take(&mut self.args), std::mem::take(&mut self.env));
        Server::spawn(&model, &data, args, env)
    }

    /// A new process on the same data directory after [`kill9`](Self::kill9).
    pub fn restart_after_kill(mut self) -> Server {
        let (model, data, args, env) =
            (self.model.clone(), self.data.clone(), std::mem::take(&mut self.args), std::mem::take(&mut self.env));
        drop(self);
        Server::spawn(&model, &data, args, env)
    }

    /// SIGTERM and wait (graceful: drains requests, saves the index snapshot).
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "lens serve exited with {status} on SIGTERM; log:\n{}", self.log());
    }

    /// SIGKILL: no chance to flush or save anything.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        into_json(self.http.get(self.url(path)).send().unwrap())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        into_json(self.http.post(self.url(path)).json(body).send().unwrap())
    }

    pub fn delete(&self, path: &str) -> u16 {
        self.http.delete(self.url(path)).send().unwrap().status().as_u16()
    }

    /// `POST path` with one `file` part per item.
    pub fn upload(&self, path: &str, files: &[(&str, Vec<u8>)], tags: Option<&str>) -> (u16, Value) {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (name, bytes) in files {
            form =
                form.part("file", reqwest::blocking::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()));
        }
        if let Some(tags) = tags {
            form = form.text("tags", tags.to_string());
        }
        into_json(self.http.post(self.url(path)).multipart(form).send().unwrap())
    }

    /// Polls a job until it is finished (succeeded, failed, dead or cancelled).
    pub fn wait_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(status, 200, "{job}");
            if ["succeeded", "failed", "dead", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} still {job} after 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub fn into_json(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, value)
}
