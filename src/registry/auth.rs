//! Registry authentication: the credentials a user gives, and the parsing of
//! `WWW-Authenticate` challenges (pure, so it is tested without a registry).

use std::fmt;

use secrecy::SecretString;

/// How to authenticate to the registry. Secrets stay wrapped until a request is built.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: SecretString,
    },
    /// A pre-issued bearer token (`--token`), sent as is.
    Bearer(SecretString),
}

impl Credentials {
    pub fn username(&self) -> Option<&str> {
        match self {
            Credentials::Basic { username, .. } => Some(username),
            _ => None,
        }
    }

    /// Words for messages: never the secret, only its kind and the user.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "no credentials".to_owned(),
            Credentials::Basic { username, .. } => format!("user {username:?}"),
            Credentials::Bearer(_) => "a bearer token".to_owned(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => formatter.write_str("Anonymous"),
            Credentials::Basic { username, .. } => formatter
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"****")
                .finish(),
            Credentials::Bearer(_) => formatter.write_str("Bearer(****)"),
        }
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
    /// Returns `None` for schemes we do not speak.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let parameters = parse_parameters(rest);
        let find = |key: &str| {
            parameters
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .map(|(_, value)| value.clone())
        };
        Some(Challenge::Bearer {
            realm: find("realm")?,
            service: find("service"),
            scope: find("scope"),
        })
    }
}

/// Splits `a="x,y", b=z` into pairs, honouring quotes (scopes contain commas).
fn parse_parameters(input: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        pairs.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    pairs
}

/// The body of a token endpoint answer. Gitea sends only `token`; the Docker
/// spec also allows `access_token`.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<SecretString> {
        self.token
            .filter(|token| !token.is_empty())
            .or(self.access_token.filter(|token| !token.is_empty()))
            .map(SecretString::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn parses_gitea_and_distribution_challenges() {
        let gitea = r#"Bearer realm="https://gitea.cnoe.localtest.me:8443/v2/token",service="container_registry",scope="*""#;
        assert_eq!(
            Challenge::parse(gitea),
            Some(Challenge::Bearer {
                realm: "https://gitea.cnoe.localtest.me:8443/v2/token".into(),
                service: Some("container_registry".into()),
                scope: Some("*".into()),
            })
        );
        let distribution = r#"Bearer realm="http://127.0.0.1:5001/token",service="reg",scope="repository:a/b:pull,push""#;
        let Some(Challenge::Bearer { scope, .. }) = Challenge::parse(distribution) else {
            panic!("not bearer")
        };
        assert_eq!(scope.as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
    }

    #[test]
    fn parameter_parsing_tolerates_spacing_and_escapes() {
        let parsed = parse_parameters(r#" realm = "a\"b" ,service=plain, scope="x,y""#);
        assert_eq!(
            parsed,
            vec![
                ("realm".into(), "a\"b".into()),
                ("service".into(), "plain".into()),
                ("scope".into(), "x,y".into()),
            ]
        );
    }

    #[test]
    fn token_response_prefers_token_then_access_token() {
        let both: TokenResponse =
            serde_json::from_str(r#"{"token":"t1","access_token":"t2"}"#).unwrap();
        assert_eq!(both.into_token().unwrap().expose_secret(), "t1");
        let access: TokenResponse = serde_json::from_str(r#"{"access_token":"t2"}"#).unwrap();
        assert_eq!(access.into_token().unwrap().expose_secret(), "t2");
        let empty: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(empty.into_token().is_none());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let credentials = Credentials::Basic {
            username: "giteaAdmin".into(),
            password: SecretString::from("s3cr3t-sentinel".to_owned()),
        };
        let printed = format!("{credentials:?} {}", credentials.describe());
        assert!(!printed.contains("s3cr3t-sentinel"), "{printed}");
        assert!(printed.contains("giteaAdmin"));
        let bearer = Credentials::Bearer(SecretString::from("tok-sentinel".to_owned()));
        assert!(!format!("{bearer:?} {}", bearer.describe()).contains("tok-sentinel"));
    }
}
