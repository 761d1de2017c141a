//! Servers a test starts for itself, so it can break, restart or configure them without
//! disturbing the machine's shared services or other tests: a PostgreSQL cluster from initdb
//! (run as the `postgres` OS user; initdb refuses root) and a redis-server, each on a free
//! port, removed when dropped.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster of the test's own, run as the `postgres` OS user (initdb refuses root).
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    pub port: u16,
    /// The `postgres` superuser's password, when the cluster asks for one over TCP.
    password: Option<String>,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster whose TCP logins need SCRAM-SHA-256 passwords (the superuser's is
    /// `password`), logging every DDL statement, as a careful production setup does.
    pub fn start_scram(password: &str) -> Self {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let me = Self {
            dir,
            port,
            password,
        };
        me.as_postgres(
            &["chown", "-R", "postgres", me.dir.path().to_str().unwrap()],
            false,
        );
        let data = me.data();
        let mut initdb = vec!["initdb", "-D", &data, "-U", "postgres", "--no-sync"];
        let pwfile = me.dir.path().join("pwfile").display().to_string();
        match &me.password {
            None => initdb.extend(["-A", "trust"]),
            Some(pw) => {
                std::fs::write(&pwfile, pw).unwrap();
                me.as_postgres(&["chown", "postgres", &pwfile], false);
                initdb.extend([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--pwfile",
                    &pwfile,
                ]);
            }
        }
        me.pg(&initdb);
        me.pg_ctl("start");
        me
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn url(&self, db: &str) -> String {
        match &self.password {
            None => format!("postgres://postgres@127.0.0.1:{}/{db}", self.port),
            Some(pw) => format!("postgres://postgres:{pw}@127.0.0.1:{}/{db}", self.port),
        }
    }

    pub fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c log_statement=ddl",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.pg(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-o",
            &opts,
            "-l",
            &log,
            "-m",
            "fast",
            "-w",
            action,
        ]);
    }

    fn pg(&self, args: &[&str]) {
        let mut a = vec![format!("{PG_BIN}/{}", args[0])];
        a.extend(args[1..].iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.as_postgres(&a, true);
    }

    fn as_postgres(&self, args: &[&str], as_user: bool) {
        let out = if as_user && is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .output()
        } else {
            Command::new(args[0]).args(&args[1..]).output()
        }
        .unwrap_or_else(|e| panic!("{args:?}: {e} (PostgreSQL 15 server binaries are needed)"));
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url(db),
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let opts = format!("-p {}", self.port);
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .args([
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A redis-server of the test's own, on a random port; killed on drop.
pub struct PrivateRedis {
    child: Child,
    pub port: u16,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = super::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
