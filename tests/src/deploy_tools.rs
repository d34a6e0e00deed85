//! Real operator tools for the deploy-file tests: finding them, a throwaway
//! certificate made with `openssl`, the shipped files with paths substituted,
//! and a foreground nginx in front of a test server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::process::Proc;

/// The workspace root (holds `deploy/` and `logrotate/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The text of a shipped file, e.g. `deploy/nginx/myultracoach.conf`.
pub fn shipped(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Where `tool` is (PATH, then the sbin directories root's PATH has).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Where `tool` is; panics with the fix when it is missing (tests must not pass
/// silently without the tool they check with).
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| {
        panic!(
            "`{tool}` is not installed, so this check cannot run. Install the Debian package \
             `{package}` (tests/run.sh does: `apt-get install {package}`), then run the tests again."
        )
    })
}

/// Whether the tests run as root (nginx/apache need `user root` then).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Runs `command` with a bound of `timeout`; panics if it does not finish.
pub fn run_bounded(what: &str, command: Command, dir: &Path, timeout: Duration) -> (bool, String) {
    let mut proc = Proc::spawn(what, command, dir);
    let status = proc
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?}"));
    let output = format!("{}{}", proc.stdout(), proc.stderr());
    (status.success(), output)
}

/// Replaces `from` (which must occur) by `to` in `text`.
pub fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped file no longer contains {from:?}; update the test's substitutions"
    );
    text.replace(from, to)
}

/// A throwaway CA and a `localhost`/`127.0.0.1` server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The CA certificate (PEM) clients trust.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

impl TestCert {
    /// Makes the CA and certificate in `dir` with `openssl`.
    pub fn generate(dir: &Path) -> Self {
        let openssl = require_tool("openssl", "openssl");
        let ca_key = dir.join("ca.key");
        let ca = dir.join("ca.pem");
        let key = dir.join("server.key");
        let csr = dir.join("server.csr");
        let cert = dir.join("server.pem");
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("write ext");
        let steps: [Vec<&str>; 3] = [
            vec![
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=myultracoach test CA",
                "-keyout",
                p(&ca_key),
                "-out",
                p(&ca),
            ],
            vec![
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                p(&key),
                "-out",
                p(&csr),
            ],
            vec![
                "x509",
                "-req",
                "-in",
                p(&csr),
                "-CA",
                p(&ca),
                "-CAkey",
                p(&ca_key),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                p(&ext),
                "-out",
                p(&cert),
            ],
        ];
        for args in steps {
            let out: Output = Command::new(&openssl)
                .args(&args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self { ca, cert, key }
    }
}

/// A path as `&str` (temp paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// The shipped nginx site with its ports, upstream and certificate substituted.
pub fn nginx_site(https_port: u16, http_port: u16, upstream_port: u16, cert: &TestCert) -> String {
    let site = shipped("deploy/nginx/myultracoach.conf");
    let site = substitute(
        &site,
        "server 127.0.0.1:3000;",
        &format!("server 127.0.0.1:{upstream_port};"),
    );
    let site = substitute(&site, "listen 80;", &format!("listen 127.0.0.1:{http_port};"));
    let site = substitute(&site, "listen [::]:80;", "");
    let site = substitute(&site, "listen 443 ssl;", &format!("listen 127.0.0.1:{https_port} ssl;"));
    let site = substitute(&site, "listen [::]:443 ssl;", "");
    let site = substitute(
        &site,
        "/etc/letsencrypt/live/coach.example.com/fullchain.pem",
        p(&cert.cert),
    );
    substitute(
        &site,
        "/etc/letsencrypt/live/coach.example.com/privkey.pem",
        p(&cert.key),
    )
}

/// A whole nginx.conf in `dir` including `site` (written next to it); returns its path.
pub fn nginx_conf(dir: &Path, site: &str) -> PathBuf {
    let site_path = dir.join("myultracoach.conf");
    std::fs::write(&site_path, site).expect("write site");
    for temp in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join(temp)).expect("temp dir");
    }
    let user = if is_root() { "user root;\n" } else { "" };
    let d = p(dir);
    let conf = format!(
        "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 include {site};\n}}\n",
        site = p(&site_path)
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    path
}

/// `nginx -p DIR -c CONF -e DIR/error.log` plus `extra` arguments.
pub fn nginx_command(dir: &Path, conf: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(require_tool("nginx", "nginx"));
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(extra);
    command
}

/// A foreground nginx serving the shipped site (killed with its workers on drop).
pub struct Nginx {
    /// The process group of master and workers.
    pub proc: Proc,
    /// HTTPS port on 127.0.0.1.
    pub https_port: u16,
    /// Plain HTTP port on 127.0.0.1 (redirects).
    pub http_port: u16,
}

impl Nginx {
    /// Starts nginx in `dir` in front of `upstream_port` and waits (bounded) until it accepts.
    pub fn start(dir: &Path, upstream_port: u16, cert: &TestCert) -> Self {
        let https_port = crate::free_port();
        let http_port = crate::free_port();
        let conf = nginx_conf(dir, &nginx_site(https_port, http_port, upstream_port, cert));
        let proc = Proc::spawn("nginx", nginx_command(dir, &conf, &[]), dir);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s:\n{}\n{}",
                proc.stderr(),
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            proc,
            https_port,
            http_port,
        }
    }
}

/// The apache2 (or httpd) binary; panics with the package to install.
pub fn apache_binary() -> PathBuf {
    find_tool("apache2")
        .or_else(|| find_tool("httpd"))
        .unwrap_or_else(|| require_tool("apache2", "apache2"))
}

/// The shipped Apache vhost with its ports, upstream and certificate substituted.
pub fn apache_site(https_port: u16, http_port: u16, upstream_port: u16, cert: &TestCert) -> String {
    let site = shipped("deploy/apache/myultracoach.conf");
    let site = substitute(
        &site,
        "<VirtualHost *:80>",
        &format!("<VirtualHost 127.0.0.1:{http_port}>"),
    );
    let site = substitute(
        &site,
        "<VirtualHost *:443>",
        &format!("<VirtualHost 127.0.0.1:{https_port}>"),
    );
    let site = substitute(&site, "127.0.0.1:3000", &format!("127.0.0.1:{upstream_port}"));
    let site = substitute(
        &site,
        "/etc/letsencrypt/live/coach.example.com/fullchain.pem",
        p(&cert.cert),
    );
    substitute(
        &site,
        "/etc/letsencrypt/live/coach.example.com/privkey.pem",
        p(&cert.key),
    )
}

/// A minimal apache2.conf in `dir` (modules the vhost needs loaded) including
/// `site`; returns its path. `dir` is made traversable for the worker user.
pub fn apache_conf(dir: &Path, site: &str, https_port: u16, http_port: u16) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let site_path = dir.join("myultracoach-apache.conf");
    std::fs::write(&site_path, site).expect("write vhost");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let modules = [
        "/usr/lib/apache2/modules",
        "/usr/lib64/httpd/modules",
        "/usr/lib/httpd/modules",
    ]
    .into_iter()
    .find(|d| Path::new(d).join("mod_ssl.so").is_file())
    .unwrap_or_else(|| panic!("mod_ssl.so not found: install the Debian package apache2 (tests/run.sh does)"));
    let user = if is_root() { "User nobody\nGroup nogroup\n" } else { "" };
    let mut conf = format!(
        "{user}ServerRoot {d}\nDefaultRuntimeDir {d}\nPidFile {d}/apache.pid\nErrorLog {d}/apache-error.log\n\
         Mutex file:{d} default\nServerName localhost\nListen 127.0.0.1:{http_port}\n\
         Listen 127.0.0.1:{https_port}\n",
        d = p(dir)
    );
    for module in [
        "mpm_event",
        "authz_core",
        "alias",
        "headers",
        "socache_shmcb",
        "ssl",
        "proxy",
        "proxy_http",
        "proxy_wstunnel",
    ] {
        conf.push_str(&format!("LoadModule {module}_module {modules}/mod_{module}.so\n"));
    }
    conf.push_str(&format!("Include {}\n", p(&site_path)));
    let path = dir.join("apache2.conf");
    std::fs::write(&path, conf).expect("write apache2.conf");
    path
}

/// A foreground Apache serving the shipped vhost (killed with its children on drop).
pub struct Apache {
    /// The process group of the parent and its children.
    pub proc: Proc,
    /// HTTPS port on 127.0.0.1.
    pub https_port: u16,
}

impl Apache {
    /// Starts Apache in `dir` in front of `upstream_port` and waits (bounded) until it accepts.
    pub fn start(dir: &Path, upstream_port: u16, cert: &TestCert) -> Self {
        let https_port = crate::free_port();
        let http_port = crate::free_port();
        let conf = apache_conf(
            dir,
            &apache_site(https_port, http_port, upstream_port, cert),
            https_port,
            http_port,
        );
        let mut command = Command::new(apache_binary());
        command.arg("-f").arg(&conf).arg("-DFOREGROUND");
        let proc = Proc::spawn("apache2", command, dir);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "apache2 did not listen within 10 s:\n{}\n{}",
                proc.stderr(),
                std::fs::read_to_string(dir.join("apache-error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { proc, https_port }
    }
}
