//! A Kubernetes API server stand-in for the cluster tests: HTTPS on loopback with its own CA,
//! bearer-token or client-certificate authentication, the JSON that a real API server sends
//! for Localbuilds, the Localbuild CRD, Secrets and `Status` errors, and kubeconfig files
//! pointing at it.
//!
//! No API server can be installed on the test machines, so this serves the few read-only
//! endpoints the plugin uses, in the shapes of kube-apiserver 1.33 (apimachinery's `Status`,
//! RBAC's forbidden message, the Go mux's plain-text `404 page not found` for paths nobody
//! serves). HTTP/1.1 only, ALPN `http/1.1`, keep-alive; std threads, no async runtime.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};

/// The user a bearer token authenticates as (appears in 403 messages).
pub const TOKEN_USER: &str = "system:serviceaccount:ci:idpbuilder-pusher";
/// The user (certificate CN) and group (O) of the generated client certificate; the same
/// placeholder names `manifests/rbac.yaml` binds.
pub const CERT_USER: &str = "idpbuilder-pusher";
pub const CERT_GROUP: &str = "idpbuilder-pushers";
/// Nothing listens on port 1 of loopback: connections are refused at once.
pub const UNREACHABLE_URL: &str = "https://127.0.0.1:1";

const LOCALBUILD_GROUP: &str = "idpbuilder.cnoe.io";
const LOCALBUILD_API_VERSION: &str = "idpbuilder.cnoe.io/v1alpha1";
const LOCALBUILD_CRD_NAME: &str = "localbuilds.idpbuilder.cnoe.io";
const CRD_YAML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/manifests/localbuild-crd.yaml"
));

const POLL_INTERVAL: Duration = Duration::from_millis(25);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the server holds; change it while running through [`KubeServer::state`].
#[derive(Clone, Debug, Default)]
pub struct KubeState {
    /// Full Localbuild objects (see [`localbuild`]).
    pub localbuilds: Vec<Value>,
    /// The CRD `localbuilds.idpbuilder.cnoe.io` (see [`localbuild_crd`]). When this is `None`
    /// and `localbuilds` is empty, the Localbuild API itself is absent, as on a cluster without
    /// idpbuilder: its paths answer the plain-text `404 page not found`.
    pub crd: Option<Value>,
    /// (namespace, name) -> Secret object with base64 `data` (see [`secret`]).
    pub secrets: HashMap<(String, String), Value>,
    /// Request paths (no query) answered 403 with RBAC's message for the authenticated user.
    pub forbidden: Vec<String>,
}

/// How clients must authenticate; anything else gets a 401 `Status`.
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// `Authorization: Bearer <token>`, user [`TOKEN_USER`].
    BearerToken(String),
    /// A client certificate signed by the server's CA, user [`CERT_USER`]. The server generates
    /// one; [`KubeServer::user`] carries it. A certificate from another CA fails the handshake.
    ClientCertificate,
}

/// The credentials of a kubeconfig `users[]` entry.
#[derive(Clone, Debug)]
pub enum KubeconfigUser {
    Token(String),
    ClientCertificate {
        cert_pem: String,
        key_pem: String,
    },
    /// `user: {}`: requests go out without credentials.
    Anonymous,
}

/// One context of a kubeconfig: a cluster entry, a user entry and the context joining them,
/// all named `context`.
#[derive(Clone, Debug)]
pub struct KubeconfigEntry {
    pub context: String,
    pub server: String,
    pub ca_pem: String,
    pub user: KubeconfigUser,
}

/// A running server; it stops and joins its threads when dropped.
pub struct KubeServer {
    address: SocketAddr,
    ca_pem: String,
    user: KubeconfigUser,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<KubeState>,
    requests: Mutex<Vec<String>>,
    auth: ClientAuth,
    tls: Arc<ServerConfig>,
    stop: AtomicBool,
    resource_version: AtomicU64,
    connections: AtomicU64,
}

impl KubeServer {
    /// Generates a CA and a server certificate (SANs 127.0.0.1 and localhost), binds a free
    /// loopback port and serves on a background thread.
    pub fn start(state: KubeState, auth: ClientAuth) -> io::Result<KubeServer> {
        let pki = Pki::generate().map_err(io::Error::other)?;
        let tls = server_tls_config(&pki, &auth)?;
        let user = match &auth {
            ClientAuth::BearerToken(token) => KubeconfigUser::Token(token.clone()),
            ClientAuth::ClientCertificate => KubeconfigUser::ClientCertificate {
                cert_pem: pki.client_cert_pem.clone(),
                key_pem: pki.client_key_pem.clone(),
            },
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            requests: Mutex::new(Vec::new()),
            auth,
            tls: Arc::new(tls),
            stop: AtomicBool::new(false),
            resource_version: AtomicU64::new(10_000),
            connections: AtomicU64::new(0),
        });
        let loop_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("kube-server-accept".into())
            .spawn(move || accept_loop(listener, loop_shared))?;
        Ok(KubeServer {
            address,
            ca_pem: pki.ca_pem,
            user,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// PEM of the CA that signed the server (and client) certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Credentials this server accepts.
    pub fn user(&self) -> &KubeconfigUser {
        &self.user
    }

    /// The user name RBAC messages name: [`TOKEN_USER`] or [`CERT_USER`].
    pub fn user_name(&self) -> &'static str {
        match self.shared.auth {
            ClientAuth::BearerToken(_) => TOKEN_USER,
            ClientAuth::ClientCertificate => CERT_USER,
        }
    }

    /// The live state; changes apply to the next request. Do not hold it across a request.
    pub fn state(&self) -> MutexGuard<'_, KubeState> {
        lock(&self.shared.state)
    }

    /// Every request received so far as `METHOD /path` (query left off), in order, whatever
    /// the answer (401s included).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.requests).clone()
    }

    /// TCP connections accepted so far (kube's client reuses one while it stays open).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// A kubeconfig entry for this server with the credentials it accepts.
    pub fn kubeconfig_entry(&self, context: &str) -> KubeconfigEntry {
        KubeconfigEntry {
            context: context.to_owned(),
            server: self.url(),
            ca_pem: self.ca_pem.clone(),
            user: self.user.clone(),
        }
    }

    /// Like [`KubeServer::kubeconfig_entry`] but pointing at [`UNREACHABLE_URL`].
    pub fn unreachable_entry(&self, context: &str) -> KubeconfigEntry {
        KubeconfigEntry {
            server: UNREACHABLE_URL.to_owned(),
            ..self.kubeconfig_entry(context)
        }
    }

    /// Writes a kubeconfig whose only (and current) context is `context`, for this server.
    pub fn write_kubeconfig(&self, path: &Path, context: &str) -> io::Result<()> {
        write_kubeconfig_multi(path, &[self.kubeconfig_entry(context)], context)
    }

    /// Writes a kubeconfig with `context` (this server) and `unreachable_context`
    /// ([`UNREACHABLE_URL`]), `current` being the current context.
    pub fn write_kubeconfig_with_unreachable(
        &self,
        path: &Path,
        context: &str,
        unreachable_context: &str,
        current: &str,
    ) -> io::Result<()> {
        let entries = [
            self.kubeconfig_entry(context),
            self.unreachable_entry(unreachable_context),
        ];
        write_kubeconfig_multi(path, &entries, current)
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
    }
}

/// A loopback port that accepts TCP connections (the kernel does) but never answers: a client
/// hangs in the TLS handshake until its own timeout. Kept open while this value lives.
pub struct SilentEndpoint {
    listener: TcpListener,
}

impl SilentEndpoint {
    pub fn start() -> io::Result<SilentEndpoint> {
        Ok(SilentEndpoint {
            listener: TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
        })
    }

    pub fn url(&self) -> String {
        let address = self
            .listener
            .local_addr()
            .expect("bound listener has an address");
        format!("https://{address}")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock already failed; keep serving the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Kubeconfig files

/// Writes a kubeconfig (YAML) with one cluster, user and context per entry, each named after
/// its context, and `current` as current-context.
pub fn write_kubeconfig_multi(
    path: &Path,
    entries: &[KubeconfigEntry],
    current: &str,
) -> io::Result<()> {
    std::fs::write(path, kubeconfig_yaml(entries, current))
}

/// The kubeconfig text of [`write_kubeconfig_multi`].
pub fn kubeconfig_yaml(entries: &[KubeconfigEntry], current: &str) -> String {
    // JSON strings are valid YAML double-quoted scalars, so quoting goes through serde_json.
    let quote = |text: &str| Value::from(text).to_string();
    let b64 = |text: &str| quote(&BASE64.encode(text));
    let mut clusters = String::new();
    let mut users = String::new();
    let mut contexts = String::new();
    for entry in entries {
        let name = quote(&entry.context);
        clusters += &format!(
            "- name: {name}\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n",
            quote(&entry.server),
            b64(&entry.ca_pem)
        );
        users += &match &entry.user {
            KubeconfigUser::Token(token) => {
                format!("- name: {name}\n  user:\n    token: {}\n", quote(token))
            }
            KubeconfigUser::ClientCertificate { cert_pem, key_pem } => format!(
                "- name: {name}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(cert_pem),
                b64(key_pem)
            ),
            KubeconfigUser::Anonymous => format!("- name: {name}\n  user: {{}}\n"),
        };
        contexts += &format!("- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n");
    }
    format!(
        "apiVersion: v1\nkind: Config\npreferences: {{}}\ncurrent-context: {}\nclusters:\n{clusters}users:\n{users}contexts:\n{contexts}",
        quote(current)
    )
}

// ---------------------------------------------------------------------------------------------
// Certificates and TLS

struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Pki {
    fn generate() -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = distinguished_name("kubernetes", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params.distinguished_name = distinguished_name("kube-apiserver", None);
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params.distinguished_name = distinguished_name(CERT_USER, Some(CERT_GROUP));
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer)?;

        Ok(Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_der: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }
}

fn distinguished_name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name
}

fn server_tls_config(pki: &Pki, auth: &ClientAuth) -> io::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match auth {
        ClientAuth::BearerToken(_) => builder.with_no_client_auth(),
        ClientAuth::ClientCertificate => {
            let mut roots = RootCertStore::empty();
            roots.add(pki.ca_der.clone()).map_err(io::Error::other)?;
            // Like kube-apiserver: a missing certificate is not a handshake error, the request
            // is then unauthenticated (401); a certificate from another CA is refused.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone()));
    let mut config = builder
        .with_single_cert(vec![pki.server_der.clone(), pki.ca_der.clone()], key)
        .map_err(io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// Connections and HTTP/1.1

type TlsStream = StreamOwned<ServerConnection, TcpStream>;

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let connection_shared = Arc::clone(&shared);
                let spawned = thread::Builder::new()
                    .name("kube-server-connection".into())
                    .spawn(move || serve_connection(stream, &connection_shared));
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

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let Ok(mut tls) = handshake(stream, shared) else {
        return;
    };
    let mut buffer = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let request = match read_request(&mut tls, &mut buffer, &shared.stop) {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        let authenticated = tls
            .conn
            .peer_certificates()
            .is_some_and(|chain| !chain.is_empty());
        let response = respond(&request, authenticated, shared);
        let keep_alive = !request.wants_close();
        if write_response(&mut tls, &response, keep_alive).is_err() || !keep_alive {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
            return;
        }
    }
}

fn handshake(stream: TcpStream, shared: &Shared) -> io::Result<TlsStream> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL_INTERVAL * 4))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let connection = ServerConnection::new(Arc::clone(&shared.tls)).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(connection, stream);
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    while tls.conn.is_handshaking() {
        if Instant::now() > deadline || shared.stop.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match tls.conn.complete_io(&mut tls.sock) {
            Ok((0, 0)) if tls.conn.is_handshaking() => {
                return Err(io::ErrorKind::UnexpectedEof.into())
            }
            Ok(_) => {}
            Err(error) if is_timeout(&error) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(tls)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Reads one request (its body is read and dropped). `None`: the peer closed, stayed idle, or
/// the server is stopping.
fn read_request(
    tls: &mut TlsStream,
    buffer: &mut Vec<u8>,
    stop: &AtomicBool,
) -> io::Result<Option<Request>> {
    let idle_deadline = Instant::now() + IDLE_TIMEOUT;
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        if buffer.len() > MAX_HEAD_BYTES || Instant::now() > idle_deadline {
            return Ok(None);
        }
        if stop.load(Ordering::SeqCst) || !fill(tls, buffer)? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target)) = (request_line.next(), request_line.next()) else {
        return Ok(None);
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
    };
    let body_length: usize = request
        .header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    if body_length > MAX_BODY_BYTES {
        return Ok(None);
    }
    while buffer.len() < body_length {
        if stop.load(Ordering::SeqCst) || Instant::now() > idle_deadline || !fill(tls, buffer)? {
            return Ok(None);
        }
    }
    buffer.drain(..body_length);
    Ok(Some(request))
}

/// Appends what the peer sent; false when it closed. A read timeout appends nothing.
fn fill(tls: &mut TlsStream, buffer: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    match tls.read(&mut chunk) {
        Ok(0) => Ok(false),
        Ok(read) => {
            buffer.extend_from_slice(&chunk[..read]);
            Ok(true)
        }
        Err(error) if is_timeout(&error) => Ok(true),
        Err(error) => Err(error),
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }

    /// What the Go mux answers for a path no API group serves.
    fn page_not_found() -> Response {
        Response {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: b"404 page not found\n".to_vec(),
        }
    }
}

fn write_response(tls: &mut TlsStream, response: &Response, keep_alive: bool) -> io::Result<()> {
    let reason = match response.status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Unknown",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nCache-Control: no-cache, private\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" },
    );
    tls.write_all(head.as_bytes())?;
    tls.write_all(&response.body)?;
    tls.flush()
}

// ---------------------------------------------------------------------------------------------
// The API

/// A `/api/...` or `/apis/...` path split into its parts.
struct ResourcePath<'a> {
    group: &'a str,
    version: &'a str,
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
}

impl<'a> ResourcePath<'a> {
    fn parse(path: &'a str) -> Option<ResourcePath<'a>> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(*namespace), rest),
            _ => (None, rest),
        };
        let (resource, name) = match rest {
            [resource] => (*resource, None),
            [resource, name] => (*resource, Some(*name)),
            _ => return None,
        };
        Some(ResourcePath {
            group,
            version,
            namespace,
            resource,
            name,
        })
    }

    /// `secrets` or `localbuilds.idpbuilder.cnoe.io`, as apimachinery prints a GroupResource.
    fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(name) = self.name {
            details.insert("name".into(), name.into());
        }
        if !self.group.is_empty() {
            details.insert("group".into(), self.group.into());
        }
        details.insert("kind".into(), self.resource.into());
        Value::Object(details)
    }
}

fn respond(request: &Request, has_client_certificate: bool, shared: &Shared) -> Response {
    lock(&shared.requests).push(format!("{} {}", request.method, request.path()));
    if !is_authenticated(request, has_client_certificate, &shared.auth) {
        return Response::json(401, &status_json(401, "Unauthorized", "Unauthorized", None));
    }
    let user = match shared.auth {
        ClientAuth::BearerToken(_) => TOKEN_USER,
        ClientAuth::ClientCertificate => CERT_USER,
    };
    let path = request.path();
    if path == "/version" {
        return Response::json(200, &version_json());
    }
    let Some(resource_path) = ResourcePath::parse(path) else {
        return Response::page_not_found();
    };
    let state = lock(&shared.state);
    if state.forbidden.iter().any(|forbidden| forbidden == path) {
        return forbidden(&resource_path, user);
    }
    if request.method != "GET" {
        let message = "the server does not allow this method on the requested resource";
        return Response::json(
            405,
            &status_json(405, "MethodNotAllowed", message, Some(json!({}))),
        );
    }
    let resource_version = shared
        .resource_version
        .fetch_add(1, Ordering::SeqCst)
        .to_string();
    route(&resource_path, &state, &resource_version)
}

fn is_authenticated(request: &Request, has_client_certificate: bool, auth: &ClientAuth) -> bool {
    match auth {
        ClientAuth::BearerToken(expected) => request
            .header("authorization")
            .and_then(|value| value.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && token.trim() == expected
            }),
        // The verifier already refused certificates from other CAs during the handshake.
        ClientAuth::ClientCertificate => has_client_certificate,
    }
}

fn route(path: &ResourcePath<'_>, state: &KubeState, resource_version: &str) -> Response {
    let localbuild_api = state.crd.is_some() || !state.localbuilds.is_empty();
    match (
        path.group,
        path.version,
        path.namespace,
        path.resource,
        path.name,
    ) {
        (LOCALBUILD_GROUP, "v1alpha1", None, "localbuilds", name) if localbuild_api => match name {
            None => {
                let list = list_json(
                    LOCALBUILD_API_VERSION,
                    "LocalbuildList",
                    state.localbuilds.clone(),
                    resource_version,
                );
                Response::json(200, &list)
            }
            Some(name) => found_or_not(
                path,
                state
                    .localbuilds
                    .iter()
                    .find(|item| object_name(item) == Some(name)),
            ),
        },
        ("apiextensions.k8s.io", "v1", None, "customresourcedefinitions", Some(name)) => {
            found_or_not(
                path,
                state
                    .crd
                    .as_ref()
                    .filter(|crd| object_name(crd) == Some(name)),
            )
        }
        ("", "v1", Some(namespace), "secrets", Some(name)) => found_or_not(
            path,
            state.secrets.get(&(namespace.to_owned(), name.to_owned())),
        ),
        ("", "v1", Some(namespace), "secrets", None) => {
            let list = secret_list(state, namespace, resource_version);
            Response::json(200, &list)
        }
        _ => Response::page_not_found(),
    }
}

fn secret_list(state: &KubeState, namespace: &str, resource_version: &str) -> Value {
    let mut items: Vec<(&(String, String), &Value)> = state
        .secrets
        .iter()
        .filter(|((secret_namespace, _), _)| secret_namespace == namespace)
        .collect();
    items.sort_by(|left, right| left.0.cmp(right.0));
    // Built-in types' list items carry no apiVersion/kind.
    let items = items
        .into_iter()
        .map(|(_, secret)| without_type_meta(secret))
        .collect();
    list_json("v1", "SecretList", items, resource_version)
}

fn found_or_not(path: &ResourcePath<'_>, object: Option<&Value>) -> Response {
    match object {
        Some(object) => Response::json(200, object),
        None => {
            let name = path.name.unwrap_or_default();
            let message = format!("{} \"{name}\" not found", path.group_resource());
            Response::json(
                404,
                &status_json(404, "NotFound", &message, Some(path.details())),
            )
        }
    }
}

/// RBAC's denial, as kube-apiserver's `responsewriters.Forbidden` words it.
fn forbidden(path: &ResourcePath<'_>, user: &str) -> Response {
    let verb = if path.name.is_some() { "get" } else { "list" };
    let scope = match path.namespace {
        Some(namespace) => format!("in the namespace \"{namespace}\""),
        None => "at the cluster scope".to_owned(),
    };
    let subject = match path.name {
        Some(name) => format!("{} \"{name}\"", path.group_resource()),
        None => path.group_resource(),
    };
    let message = format!(
        "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
        path.resource, path.group
    );
    Response::json(
        403,
        &status_json(403, "Forbidden", &message, Some(path.details())),
    )
}

fn status_json(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status["code"] = code.into();
    status
}

fn list_json(api_version: &str, kind: &str, items: Vec<Value>, resource_version: &str) -> Value {
    json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": resource_version},
        "items": items,
    })
}

fn version_json() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.1",
        "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
        "gitTreeState": "clean",
        "buildDate": "2025-05-21T08:25:58Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn object_name(object: &Value) -> Option<&str> {
    object.pointer("/metadata/name").and_then(Value::as_str)
}

fn without_type_meta(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    object
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A uid-shaped string that is stable for a given seed.
fn fake_uid(seed: &str) -> String {
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        hash & 0xfff,
        (hash >> 20) & 0xfff,
        hash & 0xffff_ffff_ffff
    )
}

fn object_metadata(name: &str, namespace: Option<&str>) -> Value {
    let mut metadata = json!({
        "name": name,
        "uid": fake_uid(&format!("{}/{name}", namespace.unwrap_or_default())),
        "resourceVersion": "1042",
        "creationTimestamp": "2025-12-01T09:30:00Z",
    });
    if let Some(namespace) = namespace {
        metadata["namespace"] = namespace.into();
    }
    metadata
}

/// A Localbuild as `idpbuilder create` leaves it once reconciled: https, `ingressHost` equal
/// to `host`, Gitea status with its external URL and the `adminUserSecretNameecret` typo key.
/// `oci_push`: `None` leaves `ociPush` out, `Some(b)` sets `ociPush.enabled: b`.
pub fn localbuild(
    name: &str,
    host: &str,
    port: &str,
    path_routing: bool,
    oci_push: Option<bool>,
    self_signed_cert_pem: Option<&str>,
) -> Value {
    let external_url = if path_routing {
        format!("https://{host}:{port}/gitea")
    } else {
        format!("https://gitea.{host}:{port}")
    };
    let build_customization = build_customization(host, port, path_routing, self_signed_cert_pem);
    let mut package_configs = json!({
        "argoPackageConfigs": {"enabled": true},
        "embeddedArgoApplicationsPackageConfigs": {"enabled": true},
    });
    if let Some(enabled) = oci_push {
        package_configs["ociPush"] = json!({ "enabled": enabled });
    }
    let mut metadata = object_metadata(name, None);
    metadata["generation"] = 1.into();
    metadata["annotations"] = json!({
        "cnoe.io/cli-start-time": "2025-12-01T09:29:41Z",
        "cnoe.io/last-observed-cli-start-time": "2025-12-01T09:29:41Z",
    });
    json!({
        "apiVersion": LOCALBUILD_API_VERSION,
        "kind": "Localbuild",
        "metadata": metadata,
        "spec": {
            "buildCustomization": build_customization,
            "packageConfigs": package_configs,
        },
        "status": {
            "observedGeneration": 1,
            "ArgoCD": {"available": true, "appsCreated": true},
            "nginx": {"available": true},
            "gitea": {
                "available": true,
                "externalURL": external_url,
                "internalURL": external_url,
                "adminUserSecretNameecret": "gitea-credential",
                "adminUserSecretNamespace": "gitea",
            },
        },
    })
}

fn build_customization(
    host: &str,
    port: &str,
    path_routing: bool,
    self_signed_cert_pem: Option<&str>,
) -> Value {
    let mut build_customization = json!({
        "protocol": "https",
        "host": host,
        "ingressHost": host,
        "port": port,
    });
    // Go's omitempty: false booleans and empty strings are not on the wire.
    if path_routing {
        build_customization["usePathRouting"] = true.into();
    }
    if let Some(pem) = self_signed_cert_pem {
        build_customization["selfSignedCert"] = pem.into();
    }
    build_customization
}

/// An Opaque Secret with `data` base64-encoded from `entries`.
pub fn secret(namespace: &str, name: &str, entries: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), BASE64.encode(value).into()))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_metadata(name, Some(namespace)),
        "data": data,
        "type": "Opaque",
    })
}

/// `gitea/gitea-credential` as idpbuilder writes it.
pub fn gitea_secret(username: &str, password: &str, token: &str) -> Value {
    let mut object = secret(
        "gitea",
        "gitea-credential",
        &[
            ("password", password),
            ("token", token),
            ("username", username),
        ],
    );
    object["metadata"]["labels"] =
        json!({"cnoe.io/cli-secret": "true", "cnoe.io/package-name": "gitea"});
    object
}

/// `default/idpbuilder-cert` (key `ca.crt`) as idpbuilder writes it.
pub fn cert_secret(pem: &str) -> Value {
    secret("default", "idpbuilder-cert", &[("ca.crt", pem)])
}

/// The `(namespace, name)` key under which `secret` belongs in [`KubeState::secrets`].
pub fn secret_key(secret: &Value) -> (String, String) {
    let field = |pointer: &str| {
        secret
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("/metadata/namespace"), field("/metadata/name"))
}

impl KubeState {
    /// Stores `secret` under its own namespace and name.
    pub fn insert_secret(&mut self, secret: Value) {
        self.secrets.insert(secret_key(&secret), secret);
    }
}

/// The CRD as the API server returns it: `manifests/localbuild-crd.yaml` (with `ociPush`) or
/// the same with `ociPush` removed (upstream idpbuilder's CRD), plus server-set metadata,
/// `conversion` and `status`.
pub fn localbuild_crd(with_oci_push: bool) -> Value {
    let mut crd: Value =
        serde_saphyr::from_str(CRD_YAML).expect("manifests/localbuild-crd.yaml parses");
    if !with_oci_push {
        let removed = crd
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/packageConfigs/properties")
            .and_then(Value::as_object_mut)
            .and_then(|properties| properties.remove("ociPush"));
        assert!(
            removed.is_some(),
            "manifests/localbuild-crd.yaml has packageConfigs.ociPush"
        );
    }
    let annotations = crd["metadata"]["annotations"].clone();
    let mut metadata = object_metadata(LOCALBUILD_CRD_NAME, None);
    metadata["generation"] = 1.into();
    metadata["annotations"] = annotations;
    crd["metadata"] = metadata;
    crd["spec"]["conversion"] = json!({"strategy": "None"});
    crd["status"] = json!({
        "acceptedNames": {
            "kind": "Localbuild",
            "listKind": "LocalbuildList",
            "plural": "localbuilds",
            "singular": "localbuild",
        },
        "conditions": [
            crd_condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            crd_condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": ["v1alpha1"],
    });
    crd
}

fn crd_condition(kind: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": "True",
        "lastTransitionTime": "2025-12-01T09:29:50Z",
        "reason": reason,
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    //! The server against a plain rustls client (wire details) and against the real kube
    //! client (what the plugin's cluster code will see).

    use super::*;
    use crate::support::TempDir;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection};

    const TOKEN: &str = "kube-server-test-token";

    fn cluster_state(localbuild_name: &str) -> KubeState {
        let mut state = KubeState {
            localbuilds: vec![localbuild(
                localbuild_name,
                "cnoe.localtest.me",
                "8443",
                false,
                Some(true),
                None,
            )],
            crd: Some(localbuild_crd(true)),
            ..KubeState::default()
        };
        state.insert_secret(gitea_secret("giteaAdmin", "s3cret", "gitea-token"));
        state.insert_secret(cert_secret(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ));
        state
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    async fn kube_client(path: &Path, context: Option<&str>) -> kube::Result<kube::Client> {
        // Not needed while ring is rustls's only provider in the build (rustls then picks it
        // itself); kept so a second provider in the tree cannot make kube's TLS setup panic.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig parses");
        let options = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("kubeconfig is usable");
        kube::Client::try_from(config)
    }

    fn localbuilds(client: kube::Client) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("idpbuilder.cnoe.io", "v1alpha1", "Localbuild");
        Api::all_with(
            client,
            &ApiResource::from_gvk_with_plural(&gvk, "localbuilds"),
        )
    }

    fn api_status<T: std::fmt::Debug>(result: kube::Result<T>) -> kube::core::Status {
        match result {
            Err(kube::Error::Api(status)) => *status,
            other => panic!("expected kube::Error::Api, got {other:?}"),
        }
    }

    fn names(list: &kube::core::ObjectList<DynamicObject>) -> Vec<String> {
        list.items
            .iter()
            .filter_map(|item| item.metadata.name.clone())
            .collect()
    }

    #[test]
    fn bearer_token_kube_client_reads_localbuilds_crd_and_secrets() {
        let server = KubeServer::start(
            cluster_state("localdev"),
            ClientAuth::BearerToken(TOKEN.into()),
        )
        .unwrap();
        server
            .state()
            .forbidden
            .push("/api/v1/namespaces/gitea/secrets/gitea-credential".into());
        let directory = TempDir::new("kube-server");
        let kubeconfig = directory.path().join("config");
        server
            .write_kubeconfig(&kubeconfig, "kind-localdev")
            .unwrap();

        runtime().block_on(async {
            let client = kube_client(&kubeconfig, Some("kind-localdev")).await.unwrap();
            let list = localbuilds(client.clone()).list(&ListParams::default()).await.unwrap();
            assert_eq!(names(&list), ["localdev"]);
            let one = localbuilds(client.clone()).get("localdev").await.unwrap();
            assert_eq!(one.data["spec"]["packageConfigs"]["ociPush"]["enabled"], true);
            assert_eq!(one.data["status"]["gitea"]["adminUserSecretNameecret"], "gitea-credential");

            let missing = api_status(localbuilds(client.clone()).get("nope").await);
            assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
            assert_eq!(missing.message, r#"localbuilds.idpbuilder.cnoe.io "nope" not found"#);

            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let crd = crds.get("localbuilds.idpbuilder.cnoe.io").await.unwrap();
            let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
            let spec = &schema.properties.as_ref().unwrap()["spec"];
            let package_configs = &spec.properties.as_ref().unwrap()["packageConfigs"];
            assert!(package_configs.properties.as_ref().unwrap().contains_key("ociPush"));

            let certificates: Api<Secret> = Api::namespaced(client.clone(), "default");
            let certificate = certificates.get("idpbuilder-cert").await.unwrap();
            let pem = &certificate.data.unwrap()["ca.crt"].0;
            assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));

            let credentials: Api<Secret> = Api::namespaced(client.clone(), "gitea");
            let denied = api_status(credentials.get("gitea-credential").await);
            assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
            assert_eq!(
                denied.message,
                format!(
                    r#"secrets "gitea-credential" is forbidden: User "{TOKEN_USER}" cannot get resource "secrets" in API group "" in the namespace "gitea""#
                )
            );
            let absent = api_status(credentials.get("other").await);
            assert_eq!((absent.code, absent.message.as_str()), (404, r#"secrets "other" not found"#));
        });
        assert_eq!(
            server.requests(),
            [
                "GET /apis/idpbuilder.cnoe.io/v1alpha1/localbuilds",
                "GET /apis/idpbuilder.cnoe.io/v1alpha1/localbuilds/localdev",
                "GET /apis/idpbuilder.cnoe.io/v1alpha1/localbuilds/nope",
                "GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/localbuilds.idpbuilder.cnoe.io",
                "GET /api/v1/namespaces/default/secrets/idpbuilder-cert",
                "GET /api/v1/namespaces/gitea/secrets/gitea-credential",
                "GET /api/v1/namespaces/gitea/secrets/other",
            ]
        );
        assert_eq!(
            server.connections(),
            1,
            "kube reuses its keep-alive connection"
        );
    }

    #[test]
    fn client_certificate_kube_client_reads_and_is_denied_by_path() {
        let server =
            KubeServer::start(cluster_state("localdev"), ClientAuth::ClientCertificate).unwrap();
        let directory = TempDir::new("kube-server");
        let kubeconfig = directory.path().join("config");
        server
            .write_kubeconfig(&kubeconfig, "kind-localdev")
            .unwrap();

        runtime().block_on(async {
            let client = kube_client(&kubeconfig, None).await.unwrap();
            let credentials: Api<Secret> = Api::namespaced(client.clone(), "gitea");
            let data = credentials.get("gitea-credential").await.unwrap().data.unwrap();
            assert_eq!(data["username"].0, b"giteaAdmin");
            assert_eq!(data["token"].0, b"gitea-token");

            server.state().forbidden.push("/apis/idpbuilder.cnoe.io/v1alpha1/localbuilds".into());
            let denied = api_status(localbuilds(client.clone()).list(&ListParams::default()).await);
            assert_eq!(denied.code, 403);
            assert_eq!(
                denied.message,
                format!(
                    r#"localbuilds.idpbuilder.cnoe.io is forbidden: User "{CERT_USER}" cannot list resource "localbuilds" in API group "idpbuilder.cnoe.io" at the cluster scope"#
                )
            );
            // Only the listed path is denied.
            assert!(localbuilds(client).get("localdev").await.is_ok());
        });
    }

    #[test]
    fn wrong_or_missing_credentials_get_401() {
        let directory = TempDir::new("kube-server");
        let kubeconfig = directory.path().join("config");
        let token_server = KubeServer::start(
            cluster_state("localdev"),
            ClientAuth::BearerToken(TOKEN.into()),
        )
        .unwrap();
        let cert_server =
            KubeServer::start(cluster_state("localdev"), ClientAuth::ClientCertificate).unwrap();
        let entries = [
            KubeconfigEntry {
                user: KubeconfigUser::Token("wrong".into()),
                ..token_server.kubeconfig_entry("wrong-token")
            },
            KubeconfigEntry {
                user: KubeconfigUser::Anonymous,
                ..token_server.kubeconfig_entry("no-token")
            },
            KubeconfigEntry {
                user: KubeconfigUser::Anonymous,
                ..cert_server.kubeconfig_entry("no-certificate")
            },
            // A bearer token is not a client certificate.
            KubeconfigEntry {
                user: KubeconfigUser::Token(TOKEN.into()),
                ..cert_server.kubeconfig_entry("token-to-cert-server")
            },
        ];
        write_kubeconfig_multi(&kubeconfig, &entries, "wrong-token").unwrap();

        runtime().block_on(async {
            for context in [
                "wrong-token",
                "no-token",
                "no-certificate",
                "token-to-cert-server",
            ] {
                let client = kube_client(&kubeconfig, Some(context)).await.unwrap();
                let status = api_status(localbuilds(client).get("localdev").await);
                assert_eq!(
                    (status.code, status.reason.as_str(), status.message.as_str()),
                    (401, "Unauthorized", "Unauthorized"),
                    "context {context}"
                );
            }
        });
    }

    #[test]
    fn context_selects_between_two_servers_and_an_unreachable_one() {
        let directory = TempDir::new("kube-server");
        let kubeconfig = directory.path().join("config");
        let first = KubeServer::start(
            cluster_state("first"),
            ClientAuth::BearerToken(TOKEN.into()),
        )
        .unwrap();
        let second =
            KubeServer::start(cluster_state("second"), ClientAuth::ClientCertificate).unwrap();
        let entries = [
            first.kubeconfig_entry("kind-first"),
            second.kubeconfig_entry("kind-second"),
            first.unreachable_entry("kind-gone"),
        ];
        write_kubeconfig_multi(&kubeconfig, &entries, "kind-second").unwrap();

        runtime().block_on(async {
            for (context, expected) in [
                (None, "second"),
                (Some("kind-first"), "first"),
                (Some("kind-second"), "second"),
            ] {
                let client = kube_client(&kubeconfig, context).await.unwrap();
                let list = localbuilds(client)
                    .list(&ListParams::default())
                    .await
                    .unwrap();
                assert_eq!(names(&list), [expected], "context {context:?}");
            }
            let client = kube_client(&kubeconfig, Some("kind-gone")).await.unwrap();
            let result = localbuilds(client).list(&ListParams::default()).await;
            assert!(
                matches!(result, Err(ref error) if !matches!(error, kube::Error::Api(_))),
                "an unreachable server is a transport error, got {result:?}"
            );
        });
    }

    #[test]
    fn cluster_without_idpbuilder_and_state_changes() {
        let server =
            KubeServer::start(KubeState::default(), ClientAuth::BearerToken(TOKEN.into())).unwrap();
        let directory = TempDir::new("kube-server");
        let kubeconfig = directory.path().join("config");
        server
            .write_kubeconfig(&kubeconfig, "kind-localdev")
            .unwrap();

        runtime().block_on(async {
            let client = kube_client(&kubeconfig, None).await.unwrap();
            // No CRD: the group is not served and the API server's mux answers in plain text.
            let absent = api_status(localbuilds(client.clone()).list(&ListParams::default()).await);
            assert_eq!((absent.code, absent.message.as_str()), (404, "404 page not found"));
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let no_crd = api_status(crds.get("localbuilds.idpbuilder.cnoe.io").await);
            assert_eq!(
                no_crd.message,
                r#"customresourcedefinitions.apiextensions.k8s.io "localbuilds.idpbuilder.cnoe.io" not found"#
            );

            server.state().crd = Some(localbuild_crd(false));
            let empty = localbuilds(client.clone()).list(&ListParams::default()).await.unwrap();
            assert!(empty.items.is_empty());
            server.state().localbuilds = vec![
                localbuild("a", "a.localtest.me", "8443", true, None, None),
                localbuild("b", "b.localtest.me", "443", false, Some(false), None),
            ];
            let both = localbuilds(client.clone()).list(&ListParams::default()).await.unwrap();
            assert_eq!(names(&both), ["a", "b"]);
            let crd = crds.get("localbuilds.idpbuilder.cnoe.io").await.unwrap();
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            let package_configs = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["packageConfigs"];
            assert!(package_configs["properties"]["argoPackageConfigs"].is_object());
            assert!(package_configs["properties"].get("ociPush").is_none());
        });
    }

    #[test]
    fn fixtures_have_the_wire_shapes() {
        let routed = localbuild(
            "localdev",
            "cnoe.localtest.me",
            "8443",
            true,
            None,
            Some("PEM"),
        );
        assert_eq!(
            routed["status"]["gitea"]["externalURL"],
            "https://cnoe.localtest.me:8443/gitea"
        );
        assert_eq!(routed["spec"]["buildCustomization"]["usePathRouting"], true);
        assert_eq!(
            routed["spec"]["buildCustomization"]["selfSignedCert"],
            "PEM"
        );
        assert!(routed["spec"]["packageConfigs"].get("ociPush").is_none());
        let subdomain = localbuild(
            "localdev",
            "cnoe.localtest.me",
            "8443",
            false,
            Some(false),
            None,
        );
        assert_eq!(
            subdomain["status"]["gitea"]["externalURL"],
            "https://gitea.cnoe.localtest.me:8443"
        );
        assert!(subdomain["spec"]["buildCustomization"]
            .get("usePathRouting")
            .is_none());
        assert_eq!(
            subdomain["spec"]["packageConfigs"]["ociPush"]["enabled"],
            false
        );

        let credentials = gitea_secret("giteaAdmin", "pw", "tok");
        assert_eq!(
            secret_key(&credentials),
            ("gitea".to_owned(), "gitea-credential".to_owned())
        );
        assert_eq!(credentials["data"]["username"], BASE64.encode("giteaAdmin"));

        let with = localbuild_crd(true);
        let without = localbuild_crd(false);
        let pointer = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/packageConfigs/properties/ociPush/properties/enabled/type";
        assert_eq!(with.pointer(pointer), Some(&Value::from("boolean")));
        assert_eq!(without.pointer(pointer), None);
        assert_eq!(
            with["metadata"]["annotations"]["controller-gen.kubebuilder.io/version"],
            "v0.15.0"
        );
    }

    /// One `GET` on an open connection; returns (status, content type, body).
    fn raw_get(
        tls: &mut StreamOwned<ClientConnection, TcpStream>,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String, String) {
        let authorization = token
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n{authorization}\r\n");
        tls.write_all(request.as_bytes()).unwrap();
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(position) = received.windows(4).position(|window| window == b"\r\n\r\n") {
                break position + 4;
            }
            let read = tls.read(&mut chunk).unwrap();
            assert!(read > 0, "connection closed before the response head");
            received.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8(received[..head_end].to_vec()).unwrap();
        let header = |name: &str| {
            head.lines()
                .find_map(|line| {
                    line.split_once(':')
                        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                })
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap();
        while received.len() < head_end + length {
            let read = tls.read(&mut chunk).unwrap();
            assert!(read > 0, "connection closed before the response body");
            received.extend_from_slice(&chunk[..read]);
        }
        let status = head[9..12].parse().unwrap();
        let body = String::from_utf8(received[head_end..head_end + length].to_vec()).unwrap();
        (status, header("content-type"), body)
    }

    #[test]
    fn raw_client_gets_http1_keep_alive_and_status_bodies() {
        let server = KubeServer::start(
            cluster_state("localdev"),
            ClientAuth::BearerToken(TOKEN.into()),
        )
        .unwrap();
        let mut roots = RootCertStore::empty();
        for certificate in
            rustls_pki_types::pem::PemObject::pem_slice_iter(server.ca_pem().as_bytes())
        {
            roots.add(certificate.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        for name in ["127.0.0.1", "localhost"] {
            let socket = TcpStream::connect(&server.address).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let server_name = ServerName::try_from(name.to_owned()).unwrap();
            let connection = ClientConnection::new(Arc::new(config.clone()), server_name).unwrap();
            let mut tls = StreamOwned::new(connection, socket);

            let (status, content_type, body) = raw_get(&mut tls, "/version", Some(TOKEN));
            assert_eq!((status, content_type.as_str()), (200, "application/json"));
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap()["gitVersion"],
                "v1.33.1"
            );
            assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

            // Same connection: a path nobody serves, then no credentials.
            let (status, content_type, body) =
                raw_get(&mut tls, "/apis/example.com/v1/widgets", Some(TOKEN));
            assert_eq!(
                (status, content_type.as_str(), body.as_str()),
                (404, "text/plain; charset=utf-8", "404 page not found\n")
            );
            let (status, _, body) = raw_get(
                &mut tls,
                "/apis/idpbuilder.cnoe.io/v1alpha1/localbuilds?limit=500",
                None,
            );
            assert_eq!(status, 401);
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
            );
            let (status, _, body) = raw_get(
                &mut tls,
                "/apis/idpbuilder.cnoe.io/v1alpha1/localbuilds/x",
                Some(TOKEN),
            );
            assert_eq!(status, 404);
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"localbuilds.idpbuilder.cnoe.io \"x\" not found","reason":"NotFound","details":{"name":"x","group":"idpbuilder.cnoe.io","kind":"localbuilds"},"code":404})
            );
        }
    }

    #[test]
    fn silent_endpoint_accepts_but_never_answers() {
        let silent = SilentEndpoint::start().unwrap();
        let address = silent.url().trim_start_matches("https://").to_owned();
        let mut socket = TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        socket.write_all(b"\x16\x03\x01").unwrap();
        let error = socket.read(&mut [0u8; 16]).unwrap_err();
        assert!(is_timeout(&error), "{error}");
    }
}
