//! Secrets never reach stdout or stderr: random sentinels, every log level,
//! success and every kind of failure, including a panic.

use base64::Engine as _;

use crate::support::{docker_build, noise, services, unique, Push, Run};

/// A fresh random sentinel per call.
fn sentinel(label: &str) -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").expect("a random uuid");
    format!(
        "{label}-{}",
        String::from_utf8_lossy(&bytes).trim().replace('-', "")
    )
}

fn assert_hidden(run: &Run, secrets: &[&str], scenario: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in secrets {
        let forms = [secret.to_string(), b64.encode(secret)];
        for form in forms {
            assert!(
                !run.stdout.contains(&form) && !run.stderr.contains(&form),
                "{scenario}: a secret (or its base64) was printed:\nstdout: {}\nstderr: {}",
                run.stdout,
                run.stderr
            );
        }
    }
}

fn image() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let tag = format!("{}:v1", unique("secrets"));
            docker_build(&tag, &[vec![("f".to_owned(), noise(5, 20_000))]]);
            tag
        })
        .clone()
}

#[test]
fn no_secret_is_ever_printed() {
    let services = services();
    let tls = format!("https://{}", services.tls);
    let ca = services.ca_file.to_string_lossy().into_owned();
    // Wrong passwords at the token realm below: keep them out of the count
    // another test makes there.
    let _counting = crate::support::token_failures_lock();
    for round in 0..2 {
        for level in ["debug", "info", "warn"] {
            let password = sentinel("pw");
            let token = sentinel("tok");
            let basic = format!("{}:{}", services.tls_user, password);
            let real_basic = format!("{}:{}", services.tls_user, services.tls_password);
            let scenarios: Vec<(&str, Push, Vec<&str>)> = vec![
                (
                    "success over TLS (the real password is a per-run random secret)",
                    Push::new()
                        .args([
                            "--registry",
                            &tls,
                            "--ca-file",
                            &ca,
                            "-u",
                            &services.tls_user,
                        ])
                        .env("IDPBUILDER_REGISTRY_PASSWORD", &services.tls_password),
                    vec![services.tls_password.as_str(), real_basic.as_str()],
                ),
                (
                    "wrong password over TLS",
                    Push::new()
                        .args([
                            "--registry",
                            &tls,
                            "--ca-file",
                            &ca,
                            "-u",
                            &services.tls_user,
                        ])
                        .env("IDPBUILDER_REGISTRY_PASSWORD", &password),
                    vec![password.as_str(), basic.as_str()],
                ),
                (
                    "wrong password at the token realm",
                    Push::new()
                        .args([
                            "--registry",
                            &format!("http://{}/team", services.token_registry),
                        ])
                        .args(["-u", &services.token_user, "--password-stdin"])
                        .stdin(format!("{password}\n").as_bytes()),
                    vec![password.as_str()],
                ),
                (
                    "a rejected pre-issued bearer token",
                    Push::new()
                        .args([
                            "--registry",
                            &format!("http://{}/team", services.token_registry),
                        ])
                        .env("IDPBUILDER_REGISTRY_TOKEN", &token),
                    vec![token.as_str()],
                ),
                (
                    "network failure",
                    Push::new()
                        .args([
                            "--registry",
                            "http://127.0.0.1:9",
                            "-u",
                            "someone",
                            "-p",
                            &password,
                        ])
                        .env("IDPBUILDER_PUSH_RETRY_BASE_MS", "1"),
                    vec![password.as_str()],
                ),
                (
                    "usage error",
                    Push::new().args(["--registry", &tls, "-t", &token, "-p", &password]),
                    vec![token.as_str(), password.as_str()],
                ),
                (
                    "panic",
                    Push::new()
                        .args(["--registry", &tls, "-u", "someone"])
                        .env("IDPBUILDER_REGISTRY_PASSWORD", &password)
                        .env("IDPBUILDER_PUSH_TEST_PANIC", "1"),
                    vec![password.as_str()],
                ),
            ];
            for (scenario, push, secrets) in scenarios {
                let run = push.args(["--log-level", level]).arg(image()).run();
                if scenario.starts_with("success") {
                    run.success();
                } else {
                    assert_ne!(run.code, 0, "{scenario} must fail\n{}", run.stderr);
                }
                if scenario == "panic" {
                    run.stderr_contains("internal error");
                }
                if level == "debug" && round == 0 && scenario.starts_with("success") {
                    run.stderr_contains("http -> PATCH");
                }
                assert_hidden(&run, &secrets, &format!("{scenario} at {level}"));
            }
        }
    }
}

#[test]
fn password_stdin_rejects_empty_input() {
    Push::new()
        .args([
            "--registry",
            "http://127.0.0.1:9",
            "-u",
            "me",
            "--password-stdin",
            "img",
        ])
        .stdin(b"")
        .run()
        .failure(1)
        .stderr_contains("standard input was empty")
        .stderr_contains("hint:");
}

#[test]
fn password_on_the_command_line_warns() {
    Push::new()
        .args([
            "--registry",
            "http://127.0.0.1:9",
            "-u",
            "me",
            "-p",
            "visible-pw",
        ])
        .arg(unique("no-such-image"))
        .run()
        .failure(2)
        .stderr_contains("visible to other users")
        .stderr_contains("--password-stdin");
}

/// A plain-HTTP listener that counts the connections it receives.
fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count)
}

/// An HTTPS server (self-signed certificate) answering every request with a
/// redirect to `location`.
fn redirecting_https_server(location: String) -> u16 {
    use std::io::{Read as _, Write as _};
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let connection = rustls::ServerConnection::new(std::sync::Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let response = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tls.write_all(response.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        }
    });
    port
}

#[test]
fn a_redirect_from_https_to_plain_http_is_refused_before_any_byte_goes_out() {
    let (plain_port, connections) = counting_listener();
    let https_port = redirecting_https_server(format!("http://127.0.0.1:{plain_port}/v2/"));
    let password = sentinel("redirected");
    let run = Push::new()
        .env("IDPBUILDER_REGISTRY_PASSWORD", &password)
        .args([
            "--registry",
            &format!("https://127.0.0.1:{https_port}/team"),
            "--insecure",
            "-u",
            "someone",
            "--log-level",
            "debug",
            &image(),
        ])
        .run();
    run.failure(1)
        .stderr_contains("refusing a redirect from https to plain http");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the plain-HTTP address: {}",
        run.stderr
    );
    assert_hidden(&run, &[&password], "https -> http redirect");
}
