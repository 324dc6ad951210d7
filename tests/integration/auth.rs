//! Authentication: basic auth over TLS with a private CA, a bearer-token
//! registry, and wrong credentials failing fast.

use std::io::{Read, Write};

use crate::support::proxy::{Fault, Proxy, Rule};
use crate::support::{docker_build, noise, services, skopeo_inspect, unique, Push, TempDir};

fn build(name: &str) -> String {
    let tag = format!("{name}:v1");
    docker_build(&tag, &[vec![("data".to_owned(), noise(7, 50_000))]]);
    tag
}

/// skopeo trusts a CA from a directory holding `*.crt`.
fn cert_dir() -> TempDir {
    let directory = TempDir::new("certs");
    std::fs::copy(&services().ca_file, directory.path().join("ca.crt")).unwrap();
    directory
}

#[test]
fn basic_auth_over_tls_with_a_private_ca() {
    let services = services();
    let name = unique("tls");
    let tag = build(&name);
    let run = Push::new()
        .args(["--registry", &format!("https://{}", services.tls)])
        .args(["--username", &services.tls_user, "--password-stdin"])
        .args(["--ca-file", &services.ca_file.to_string_lossy(), &tag])
        .stdin(format!("{}\n", services.tls_password).as_bytes())
        .run();
    run.success();
    let (reference, digest) = run.pinned();
    let namespace = services.tls_user.to_lowercase();
    assert_eq!(reference, format!("{}/{namespace}/{name}:v1", services.tls));
    let certs = cert_dir();
    let creds = format!("{}:{}", services.tls_user, services.tls_password);
    let inspected = skopeo_inspect(
        &reference,
        &[
            "--creds",
            &creds,
            "--cert-dir",
            &certs.path().to_string_lossy(),
        ],
    );
    assert_eq!(inspected["Digest"], digest.as_str());
}

#[test]
fn tls_without_the_ca_fails_with_a_hint_to_pass_it() {
    let services = services();
    let tag = build(&unique("untrusted"));
    Push::new()
        .args(["--registry", &format!("https://{}", services.tls), &tag])
        .args(["-u", &services.tls_user])
        .env("IDPBUILDER_REGISTRY_PASSWORD", &services.tls_password)
        .run()
        .failure(1)
        .stderr_contains("hint:")
        .stderr_contains("--ca-file");
}

#[test]
fn insecure_skips_verification_and_says_so() {
    let services = services();
    let tag = build(&unique("insecure"));
    Push::new()
        .args([
            "--registry",
            &format!("https://{}", services.tls),
            "--insecure",
            &tag,
        ])
        .args(["-u", &services.tls_user])
        .env("IDPBUILDER_REGISTRY_PASSWORD", &services.tls_password)
        .run()
        .success()
        .stderr_contains(&format!(
            "TLS certificates of {} are not verified",
            services.tls
        ));
}

#[test]
fn wrong_password_fails_once_with_an_auth_message() {
    let services = services();
    let tag = build(&unique("wrongpw"));
    let run = Push::new()
        .args([
            "--registry",
            &format!("https://{}", services.tls),
            "--ca-file",
        ])
        .arg(&services.ca_file)
        .args(["-u", &services.tls_user, &tag])
        .env("IDPBUILDER_REGISTRY_PASSWORD", "definitely-wrong")
        .run();
    run.failure(1)
        .stderr_contains("rejected")
        .stderr_contains(&services.tls_user);
    assert!(
        !run.stderr.contains("definitely-wrong"),
        "the password is never printed"
    );
}

#[test]
fn bearer_token_registry_with_username_and_password() {
    let services = services();
    let name = unique("token");
    let tag = build(&name);
    let before = services.issuer.requests();
    let run = Push::new()
        .args([
            "--registry",
            &format!("http://{}/team", services.token_registry),
        ])
        .args(["-u", &services.token_user])
        .env("IDPBUILDER_REGISTRY_PASSWORD", &services.token_password)
        .arg(&tag)
        .run();
    run.success();
    assert!(
        services.issuer.requests() > before,
        "the token realm was used"
    );
    let (reference, digest) = run.pinned();
    let creds = format!("{}:{}", services.token_user, services.token_password);
    let inspected = skopeo_inspect(&reference, &["--tls-verify=false", "--creds", &creds]);
    assert_eq!(inspected["Digest"], digest.as_str());
}

#[test]
fn bearer_token_registry_with_a_wrong_password_asks_for_a_token_once() {
    let services = services();
    let tag = build(&unique("tokenbad"));
    let _counting = crate::support::token_failures_lock();
    let failures_before = services.issuer.failed_auth();
    Push::new()
        .args([
            "--registry",
            &format!("http://{}/team", services.token_registry),
        ])
        .args(["-u", &services.token_user, &tag])
        .env("IDPBUILDER_REGISTRY_PASSWORD", "wrong-token-password")
        .run()
        .failure(1)
        .stderr_contains("rejected");
    assert_eq!(
        services.issuer.failed_auth() - failures_before,
        1,
        "no retry storm"
    );
}

#[test]
fn a_pre_issued_bearer_token_is_sent_as_is() {
    let services = services();
    let name = unique("pretoken");
    let tag = build(&name);
    let token = services
        .issuer
        .mint_token(&[&format!("repository:team/{name}:pull,push")], 300)
        .expect("a token");
    let run = Push::new()
        .args([
            "--registry",
            &format!("http://{}/team", services.token_registry),
            "--token-stdin",
            &tag,
        ])
        .stdin(format!("{token}\n").as_bytes())
        .run();
    run.success();
    assert!(!run.stderr.contains(&token), "the token is never printed");
}

#[test]
fn credentials_never_follow_an_upload_redirect_to_another_host() {
    use crate::support::proxy::{Proxy, Recorder, Rule};
    let services = services();
    let tag = build(&unique("redirect"));
    let recorder = Recorder::start().expect("a recorder on 127.0.0.2");
    let proxy = Proxy::start(&services.token_registry).expect("proxy");
    proxy.add_rule(Rule::redirect_uploads_to(&recorder.base_url()).times(usize::MAX));
    let run = Push::new()
        .env("IDPBUILDER_PUSH_RETRY_BASE_MS", "1")
        .args(["--registry", &format!("http://{}/team", proxy.address())])
        .args(["-u", &services.token_user])
        .env("IDPBUILDER_REGISTRY_PASSWORD", &services.token_password)
        .arg(&tag)
        .run();
    let received = recorder.requests();
    assert!(
        !received.is_empty(),
        "the upload went to the other host: {}",
        run.stderr
    );
    for request in received {
        assert_eq!(
            request.header("authorization"),
            None,
            "{} {} carried credentials",
            request.method,
            request.path
        );
    }
    // The registry itself did get authorised requests.
    assert!(proxy
        .requests()
        .iter()
        .any(|request| request.header("authorization").is_some()));
}

/// The `WWW-Authenticate` challenge a registry answers `GET /v2/` with.
fn challenge_of(registry: &str) -> String {
    let mut stream = std::net::TcpStream::connect(registry).unwrap();
    stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {registry}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, value)| value.trim().to_owned())
        .expect("the token registry challenges")
}

/// A token that expires during a long upload: the registry answers a chunk
/// 401. The push gets a new token, asks the registry what the session holds
/// and sends the rest, instead of failing the layer.
#[test]
fn a_chunk_answered_401_gets_a_new_token_and_resumes_the_upload() {
    let services = services();
    let proxy = Proxy::start(&services.token_registry).expect("the proxy starts");
    proxy.add_rule(
        Rule::new(Fault::Respond {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".to_owned(),
                challenge_of(&services.token_registry),
            )],
            body: br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                .to_vec(),
        })
        .method("PATCH")
        .times(1),
    );
    let tag = format!("{}:v1", unique("reauth"));
    docker_build(&tag, &[vec![("big.bin".to_owned(), noise(61, 3 << 20))]]);
    let run = Push::new()
        .args([
            "--log-level",
            "debug",
            "--chunk-size",
            "1",
            "--registry",
            &format!("http://{}/team", proxy.address()),
            "-u",
            &services.token_user,
            &tag,
        ])
        .env("IDPBUILDER_REGISTRY_PASSWORD", &services.token_password)
        .run();
    run.success()
        .stderr_contains("a chunk got 401: authenticating again");
    let patches: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|record| record.method == "PATCH")
        .collect();
    assert!(
        patches.len() >= 4,
        "3 MiB in 1 MiB chunks, one refused: {patches:?}"
    );
    assert_eq!(patches[0].status, Some(401));
    assert!(
        patches[1..].iter().all(|patch| patch.status == Some(202)),
        "every later chunk accepted: {patches:?}"
    );
    assert_eq!(
        patches[1].header("content-range"),
        patches[0].header("content-range"),
        "the refused chunk is sent again, from the same offset"
    );
    assert_ne!(
        patches[1].header("authorization"),
        patches[0].header("authorization"),
        "with a new token"
    );
    assert!(!run.stderr.contains(&services.token_password));
    let (reference, digest) = run.pinned();
    let creds = format!("{}:{}", services.token_user, services.token_password);
    let inspected = skopeo_inspect(&reference, &["--tls-verify=false", "--creds", &creds]);
    assert_eq!(inspected["Digest"], digest.as_str());
}
