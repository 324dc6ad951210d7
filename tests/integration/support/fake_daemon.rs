//! Minimal Docker Engine API server on a unix socket that serves canned inspect JSON and `docker save` archives.
//!
//! Only for archive layouts that no daemon installable on the test machine produces (Docker >= 25
//! OCI layout, Docker >= 29 containerd image store); everything else should use a real daemon.
//! Routes: `GET|HEAD /_ping`, `GET /version`, `GET /images/{name}/json`, `GET /images/{name}/get`,
//! `GET /images/get?names=..`, each with or without a `/vX.Y` prefix; anything else is a 404 JSON
//! error. bollard 0.21 sends them unprefixed even after `negotiate_version()`: its `Uri::parse`
//! joins the absolute path onto `.../v1.xx`, which replaces the version segment. Names arrive
//! unencoded in paths (`/images/localhost:5000/team/app:v1/json`) and form-encoded in
//! `names=` (`localhost%3A5000%2Fteam%2Fapp%3Av1`). The docker CLI does use `/v1.47/...`.

#![allow(dead_code)]

use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http_server::{percent_decode, HttpConnection, HttpRequest, POLL_INTERVAL};
use super::layouts::ImageFixture;
use super::TempDir;

/// Requests served on one connection before it is closed, to bound the per-connection loop.
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
/// Write size of the streamed archive, as dockerd's (io.Copy's 32 KiB). To an
/// HTTP/1.1 request each write is one chunk; to HTTP/1.0, bare bytes ended by
/// closing the connection, as Go's server answers.
const ARCHIVE_CHUNK_BYTES: usize = 32 * 1024;
/// Shortest image-ID prefix accepted in place of a name (what `docker image ls` prints).
const MIN_ID_PREFIX: usize = 12;

/// One image the fake daemon knows.
#[derive(Clone, Debug)]
pub struct FakeImage {
    /// References it answers to, e.g. `myapp:latest`; `myapp` and `docker.io/library/myapp:latest` match too.
    pub names: Vec<String>,
    /// Body of `GET /images/{name}/json`; its `Id` also resolves the image (full or >= 12 hex digits).
    pub inspect: serde_json::Value,
    /// Body of the export endpoints (a `docker save` tar).
    pub archive: Vec<u8>,
}

impl FakeImage {
    /// The image of a layout fixture, answering to `name`.
    pub fn of(name: &str, fixture: &ImageFixture) -> FakeImage {
        FakeImage {
            names: vec![name.to_owned()],
            inspect: fixture.inspect.clone(),
            archive: fixture.archive.clone(),
        }
    }
}

/// What `/version` and `/_ping` report; `api_version` also bounds the accepted `/vX.Y` prefixes.
#[derive(Clone, Debug)]
pub struct EngineVersion {
    pub api_version: String,
    pub min_api_version: String,
    pub version: String,
    pub os: String,
    pub arch: String,
}

impl Default for EngineVersion {
    fn default() -> Self {
        EngineVersion {
            api_version: "1.47".into(),
            min_api_version: "1.24".into(),
            version: "27.0.0".into(),
            os: "linux".into(),
            arch: "amd64".into(),
        }
    }
}

/// A running fake daemon; it stops, joins its threads and removes its socket when dropped.
pub struct FakeDaemon {
    socket_path: PathBuf,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

/// State shared by the accept loop and the connection threads.
struct Shared {
    images: Vec<FakeImage>,
    version: EngineVersion,
    stop: AtomicBool,
    requests: AtomicU64,
    export_requests: AtomicU64,
    /// Archive bytes written to clients (a client that stops reading early
    /// closes the connection, and the rest is never written).
    archive_bytes_sent: AtomicU64,
    request_log: Mutex<Vec<String>>,
    /// How long an export waits before its first byte, as dockerd's classic
    /// store does while it stages the archive (milliseconds).
    export_delay_ms: AtomicU64,
    /// Archive bytes an export sends before the connection is closed, as a
    /// daemon that dies mid-export; u64::MAX: the whole archive.
    export_cut_at: AtomicU64,
}

impl FakeDaemon {
    /// Listens on `socket_path` (a stale socket there is replaced) reporting [`EngineVersion::default`].
    pub fn start(socket_path: &Path, images: Vec<FakeImage>) -> io::Result<FakeDaemon> {
        FakeDaemon::start_with_version(socket_path, images, EngineVersion::default())
    }

    pub fn start_with_version(
        socket_path: &Path,
        images: Vec<FakeImage>,
        version: EngineVersion,
    ) -> io::Result<FakeDaemon> {
        remove_stale_socket(socket_path)?;
        let listener = UnixListener::bind(socket_path)?;
        // Non-blocking accept lets the loop notice a shutdown without a wake-up connection.
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            images,
            version,
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            export_requests: AtomicU64::new(0),
            archive_bytes_sent: AtomicU64::new(0),
            request_log: Mutex::new(Vec::new()),
            export_delay_ms: AtomicU64::new(0),
            export_cut_at: AtomicU64::new(u64::MAX),
        });
        let loop_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("fake-daemon-accept".into())
            .spawn(move || accept_loop(listener, loop_shared))?;
        Ok(FakeDaemon {
            socket_path: socket_path.to_path_buf(),
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// A fake daemon on `<directory>/fake.sock` knowing `images`.
    pub fn serving(directory: &TempDir, images: Vec<FakeImage>) -> FakeDaemon {
        FakeDaemon::start(&directory.path().join("fake.sock"), images)
            .expect("the fake daemon starts")
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// `unix:///path/to.sock`, the form of `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket_path.display())
    }

    /// From now on, exports answer only after `delay` (or when the daemon stops).
    pub fn delay_exports(&self, delay: Duration) {
        self.shared
            .export_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every HTTP request received, whatever its outcome.
    /// From now on, exports close the connection after the first `bytes`
    /// bytes of the archive, without ending the body properly.
    pub fn cut_exports_at(&self, bytes: u64) {
        self.shared.export_cut_at.store(bytes, Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests to either export endpoint, found or not.
    pub fn export_requests(&self) -> u64 {
        self.shared.export_requests.load(Ordering::SeqCst)
    }

    /// Bytes of export archives written to clients so far.
    pub fn archive_bytes_sent(&self) -> u64 {
        self.shared.archive_bytes_sent.load(Ordering::SeqCst)
    }

    /// `METHOD target` of every request so far, in arrival order.
    pub fn request_log(&self) -> Vec<String> {
        self.shared
            .request_log
            .lock()
            .expect("request_log lock poisoned")
            .clone()
    }

    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept_thread.take() {
            // A panic in the server thread already failed its request; nothing more to report.
            let _ = handle.join();
            let _ = std::fs::remove_file(&self.socket_path);
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Removes a leftover socket of an earlier run; refuses to delete anything that is not a socket.
fn remove_stale_socket(socket_path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(socket_path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(socket_path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", socket_path.display()),
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let connection_shared = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("fake-daemon-connection".into())
                    .spawn(move || serve_connection(stream, &connection_shared));
                // Failing to spawn drops the stream, which the client sees as a reset.
                if let Ok(handle) = spawned {
                    connections.push(handle);
                }
            }
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
        connections.retain(|handle| !handle.is_finished());
    }
    for handle in connections {
        let _ = handle.join();
    }
}

fn serve_connection(stream: UnixStream, shared: &Shared) {
    let mut connection = match HttpConnection::new(stream) {
        Ok(connection) => connection,
        Err(_) => return,
    };
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let request = match connection.read_request(&shared.stop) {
            Ok(Some(request)) => request,
            // Closed, idle, stopping, or garbage: all end the connection.
            Ok(None) | Err(_) => return,
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        shared
            .request_log
            .lock()
            .expect("request_log lock poisoned")
            .push(format!("{} {}", request.method, request.target));
        let response = route(&request, shared);
        let keep_alive = !request.wants_close();
        // A client that hangs up mid-archive is a normal way for a test to end.
        if connection
            .write_response(&request, response, shared, keep_alive)
            .is_err()
            || !keep_alive
        {
            return;
        }
    }
}

/// Body of a response: small JSON/text with a length, or an archive streamed
/// without one (chunked, or until close).
enum Body<'a> {
    Fixed(Vec<u8>),
    Streamed(&'a [u8]),
}

struct HttpResponse<'a> {
    status: u16,
    content_type: &'static str,
    body: Body<'a>,
}

impl<'a> HttpResponse<'a> {
    fn json(status: u16, body: serde_json::Value) -> HttpResponse<'a> {
        HttpResponse {
            status,
            content_type: "application/json",
            body: Body::Fixed(body.to_string().into_bytes()),
        }
    }

    fn error(status: u16, message: String) -> HttpResponse<'a> {
        HttpResponse::json(status, serde_json::json!({ "message": message }))
    }
}

fn route<'a>(request: &HttpRequest, shared: &'a Shared) -> HttpResponse<'a> {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    let (api_version, path) = split_api_version(path);
    if let Some(rejection) =
        api_version.and_then(|version| check_api_version(version, &shared.version))
    {
        return rejection;
    }
    let method = request.method.as_str();
    if path == "/_ping" && (method == "GET" || method == "HEAD") {
        return HttpResponse {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Body::Fixed(b"OK".to_vec()),
        };
    }
    if method != "GET" {
        return HttpResponse::error(404, "page not found".into());
    }
    if path == "/version" {
        return HttpResponse::json(200, version_json(&shared.version));
    }
    if path == "/images/get" {
        shared.export_requests.fetch_add(1, Ordering::SeqCst);
        return export_by_query(query, shared);
    }
    let Some(image_route) = path.strip_prefix("/images/") else {
        return HttpResponse::error(404, "page not found".into());
    };
    if let Some(name) = image_route.strip_suffix("/json") {
        return inspect(&percent_decode(name), shared);
    }
    if let Some(name) = image_route.strip_suffix("/get") {
        shared.export_requests.fetch_add(1, Ordering::SeqCst);
        return export(&percent_decode(name), shared);
    }
    HttpResponse::error(404, "page not found".into())
}

/// Splits `/v1.47/images/x/json` into (Some("1.47"), "/images/x/json"); unprefixed paths pass through.
fn split_api_version(path: &str) -> (Option<&str>, &str) {
    let Some(rest) = path.strip_prefix("/v") else {
        return (None, path);
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let candidate = &rest[..end];
    let looks_like_version = candidate.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty()
            && !minor.is_empty()
            && (major.to_string() + minor)
                .bytes()
                .all(|byte| byte.is_ascii_digit())
    });
    if looks_like_version {
        (Some(candidate), &rest[end..])
    } else {
        (None, path)
    }
}

/// dockerd's answer to a client version outside [min, max] (a client that skipped negotiation).
fn check_api_version<'a>(requested: &str, engine: &EngineVersion) -> Option<HttpResponse<'a>> {
    if compare_versions(requested, &engine.api_version).is_gt() {
        let message = format!(
            "client version {requested} is too new. Maximum supported API version is {}",
            engine.api_version
        );
        return Some(HttpResponse::error(400, message));
    }
    if compare_versions(requested, &engine.min_api_version).is_lt() {
        let message = format!(
            "client version {requested} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
            engine.min_api_version
        );
        return Some(HttpResponse::error(400, message));
    }
    None
}

fn compare_versions(left: &str, right: &str) -> std::cmp::Ordering {
    let numbers = |text: &str| -> Vec<u64> {
        text.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    numbers(left).cmp(&numbers(right))
}

fn version_json(version: &EngineVersion) -> serde_json::Value {
    serde_json::json!({
        "Platform": {"Name": "Docker Engine - Community"},
        "Components": [{"Name": "Engine", "Version": version.version, "Details": {
            "ApiVersion": version.api_version, "MinAPIVersion": version.min_api_version, "Os": version.os, "Arch": version.arch}}],
        "Version": version.version,
        "ApiVersion": version.api_version,
        "MinAPIVersion": version.min_api_version,
        "GitCommit": "fake",
        "GoVersion": "go1.22.0",
        "Os": version.os,
        "Arch": version.arch,
        "KernelVersion": "6.1.0",
        "BuildTime": "2024-01-01T00:00:00.000000000+00:00",
    })
}

fn inspect<'a>(name: &str, shared: &'a Shared) -> HttpResponse<'a> {
    match find_image(&shared.images, name) {
        Some(image) => HttpResponse::json(200, image.inspect.clone()),
        None => HttpResponse::error(404, format!("No such image: {name}")),
    }
}

fn export<'a>(name: &str, shared: &'a Shared) -> HttpResponse<'a> {
    match find_image(&shared.images, name) {
        Some(image) => HttpResponse {
            status: 200,
            content_type: "application/x-tar",
            body: Body::Streamed(&image.archive),
        },
        None => HttpResponse::error(404, format!("No such image: {name}")),
    }
}

/// `GET /images/get?names=a&names=b`: this fake exports exactly one image per request.
fn export_by_query<'a>(query: &str, shared: &'a Shared) -> HttpResponse<'a> {
    let names: Vec<String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == "names")
        .map(|(_, value)| percent_decode(value))
        .collect();
    let Some(first) = names.first() else {
        return HttpResponse::error(400, "no image names given".into());
    };
    let Some(image) = find_image(&shared.images, first) else {
        return HttpResponse::error(404, format!("No such image: {first}"));
    };
    let all_same = names.iter().all(|name| {
        find_image(&shared.images, name).is_some_and(|other| std::ptr::eq(other, image))
    });
    if !all_same {
        return HttpResponse::error(500, "the fake daemon exports one image per request".into());
    }
    HttpResponse {
        status: 200,
        content_type: "application/x-tar",
        body: Body::Streamed(&image.archive),
    }
}

fn find_image<'a>(images: &'a [FakeImage], reference: &str) -> Option<&'a FakeImage> {
    let wanted = normalize_reference(reference);
    images.iter().find(|image| {
        image
            .names
            .iter()
            .any(|name| name == reference || normalize_reference(name) == wanted)
            || matches_id(image, reference)
    })
}

/// `sha256:<hex>`, `<hex>` or a prefix of >= 12 hex digits of the inspect `Id`.
fn matches_id(image: &FakeImage, reference: &str) -> bool {
    let Some(id) = image.inspect.get("Id").and_then(serde_json::Value::as_str) else {
        return false;
    };
    let id_hex = id.strip_prefix("sha256:").unwrap_or(id);
    let wanted_hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    wanted_hex.len() >= MIN_ID_PREFIX && id_hex.starts_with(wanted_hex)
}

/// Docker's normalisation: `myapp` -> `docker.io/library/myapp:latest`, `me/app` -> `docker.io/me/app:latest`.
fn normalize_reference(reference: &str) -> String {
    let (first, remainder) = reference.split_once('/').unwrap_or(("", reference));
    let has_domain =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let with_domain = match (has_domain, first.is_empty()) {
        (true, _) => reference.to_string(),
        (false, true) => format!("docker.io/library/{remainder}"),
        (false, false) => format!("docker.io/{reference}"),
    };
    let last_component = with_domain.rsplit('/').next().unwrap_or("");
    if last_component.contains(':') || last_component.contains('@') {
        with_domain
    } else {
        format!("{with_domain}:latest")
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Internal Server Error",
    }
}

impl HttpConnection<UnixStream> {
    fn write_response(
        &mut self,
        request: &HttpRequest,
        response: HttpResponse,
        shared: &Shared,
        keep_alive: bool,
    ) -> io::Result<()> {
        let engine = &shared.version;
        // Go's server answers in the request's version; 1.0 gets no chunking.
        let http_1_0 = request.version == "HTTP/1.0";
        let mut head = format!(
            "{} {} {}\r\n",
            if http_1_0 { "HTTP/1.0" } else { "HTTP/1.1" },
            response.status,
            reason_phrase(response.status)
        );
        // dockerd sends these on every response; clients may read Api-Version from /_ping.
        head.push_str(&format!(
            "Api-Version: {}\r\nDocker-Experimental: false\r\n",
            engine.api_version
        ));
        head.push_str(&format!(
            "Ostype: {}\r\nServer: Docker/{} ({})\r\n",
            engine.os, engine.version, engine.os
        ));
        head.push_str(&format!("Content-Type: {}\r\n", response.content_type));
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
        let body_allowed = request.method != "HEAD";
        match response.body {
            Body::Fixed(bytes) => {
                head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
                self.stream.write_all(head.as_bytes())?;
                if body_allowed {
                    self.stream.write_all(&bytes)?;
                }
            }
            Body::Streamed(bytes) => {
                let cut_at = shared.export_cut_at.load(Ordering::SeqCst);
                let bytes = &bytes[..bytes
                    .len()
                    .min(usize::try_from(cut_at).unwrap_or(usize::MAX))];
                let cut = cut_at != u64::MAX;
                let delay = Duration::from_millis(shared.export_delay_ms.load(Ordering::SeqCst));
                let until = Instant::now() + delay;
                while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                    thread::sleep(POLL_INTERVAL);
                }
                if http_1_0 {
                    head.push_str("\r\n");
                    self.stream.write_all(head.as_bytes())?;
                    if body_allowed {
                        self.write_bare(bytes, &shared.archive_bytes_sent)?;
                    }
                } else {
                    head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                    self.stream.write_all(head.as_bytes())?;
                    if body_allowed {
                        self.write_chunked(bytes, &shared.archive_bytes_sent, cut)?;
                    }
                }
                if cut {
                    // No proper end: the caller closes the connection.
                    self.stream.flush()?;
                    return Err(io::Error::other("export cut short"));
                }
            }
        }
        self.stream.flush()
    }

    fn write_bare(&mut self, bytes: &[u8], sent: &AtomicU64) -> io::Result<()> {
        for chunk in bytes.chunks(ARCHIVE_CHUNK_BYTES) {
            self.stream.write_all(chunk)?;
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        Ok(())
    }

    fn write_chunked(&mut self, bytes: &[u8], sent: &AtomicU64, cut: bool) -> io::Result<()> {
        for chunk in bytes.chunks(ARCHIVE_CHUNK_BYTES) {
            self.stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            self.stream.write_all(chunk)?;
            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            self.stream.write_all(b"\r\n")?;
        }
        if cut {
            return Ok(());
        }
        self.stream.write_all(b"0\r\n\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_docker() {
        assert_eq!(
            normalize_reference("myapp"),
            "docker.io/library/myapp:latest"
        );
        assert_eq!(normalize_reference("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(
            normalize_reference("localhost:5000/team/app"),
            "localhost:5000/team/app:latest"
        );
        assert_eq!(
            normalize_reference("gitea.cnoe.localtest.me:8443/giteaadmin/app:v2"),
            "gitea.cnoe.localtest.me:8443/giteaadmin/app:v2"
        );
    }

    #[test]
    fn api_version_prefix_is_split_off() {
        assert_eq!(
            split_api_version("/v1.47/images/a:b/json"),
            (Some("1.47"), "/images/a:b/json")
        );
        assert_eq!(split_api_version("/version"), (None, "/version"));
        assert_eq!(
            split_api_version("/v1.53/version"),
            (Some("1.53"), "/version")
        );
    }
}
