//! Owns image naming: parsing local image references and deriving where they are pushed.
//!
//! Parsing is a small hand-written parser for the distribution reference grammar
//! (`[domain[:port]/]path[:tag][@digest]`) with docker's rule for telling a domain from
//! the first path component, so that we accept exactly the names `docker tag` accepts.

use std::fmt;
use std::str::FromStr;

/// distribution's `NameTotalLengthMax`: registries reject longer names (domain included).
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The tag grammar allows one leading character plus 127 more.
const TAG_LENGTH_MAX: usize = 128;
/// The tag docker and podman assume when a reference has neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Podman's compat API stores locally built images under this pseudo-registry.
const PODMAN_LOCAL_DOMAIN: &str = "localhost";
/// Fewer hex digits than this cannot be a real digest (distribution: at least 128 bits).
const DIGEST_HEX_MINIMUM: usize = 32;
/// Digest algorithms with a fixed, lowercase-hex encoding (as the go-digest registry has).
const KNOWN_DIGEST_ALGORITHMS: [(&str, usize); 3] =
    [("sha256", 64), ("sha384", 96), ("sha512", 128)];
/// The length of a full image ID, which docker refuses as a repository name.
const IMAGE_ID_HEX_LENGTH: usize = 64;

/// Which user input an error is about, so the message and hint can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The local image argument.
    LocalImage,
    /// The `--to` flag.
    ToFlag,
    /// The path of the `--registry` URL (the namespace).
    RegistryPath,
    /// The host[:port] of the `--registry` URL.
    RegistryHost,
    /// The destination name composed from several inputs.
    Destination,
}

impl fmt::Display for Field {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Field::LocalImage => "image reference",
            Field::ToFlag => "--to value",
            Field::RegistryPath => "--registry path",
            Field::RegistryHost => "--registry host",
            Field::Destination => "destination",
        })
    }
}

/// Why one `/`-separated repository path component is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentProblem {
    Uppercase,
    InvalidCharacter(char),
    BadStart(char),
    BadEnd(char),
    BadSeparator(String),
}

impl fmt::Display for ComponentProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uppercase => write!(formatter, "contains uppercase letters"),
            Self::InvalidCharacter(found) => {
                write!(formatter, "contains {found:?}, which is not allowed")
            }
            Self::BadStart(found) => write!(
                formatter,
                "starts with {found:?} instead of a lowercase letter or digit"
            ),
            Self::BadEnd(found) => write!(
                formatter,
                "ends with {found:?} instead of a lowercase letter or digit"
            ),
            Self::BadSeparator(separator) => write!(
                formatter,
                "has the separator {separator:?}, which is not allowed"
            ),
        }
    }
}

/// Why a tag is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagProblem {
    Empty,
    TooLong(usize),
    BadStart(char),
    InvalidCharacter(char),
}

impl fmt::Display for TagProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(formatter, "is empty"),
            Self::TooLong(length) => write!(
                formatter,
                "is {length} characters long, more than {TAG_LENGTH_MAX}"
            ),
            Self::BadStart(found) => write!(formatter, "starts with {found:?}"),
            Self::InvalidCharacter(found) => {
                write!(formatter, "contains {found:?}, which is not allowed")
            }
        }
    }
}

/// Why a digest is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestProblem {
    Empty,
    MissingSeparator,
    InvalidAlgorithm(String),
    InvalidCharacter(char),
    WrongLength {
        algorithm: String,
        expected: usize,
        actual: usize,
    },
    TooShort(usize),
}

impl fmt::Display for DigestProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(formatter, "is empty"),
            Self::MissingSeparator => write!(formatter, "has no ':' between algorithm and hex"),
            Self::InvalidAlgorithm(algorithm) => {
                write!(formatter, "has the invalid algorithm {algorithm:?}")
            }
            Self::InvalidCharacter(found) => {
                write!(formatter, "contains {found:?} where hex digits belong")
            }
            Self::WrongLength {
                algorithm,
                expected,
                actual,
            } => {
                write!(
                    formatter,
                    "has {actual} hex digits where {algorithm} needs {expected}"
                )
            }
            Self::TooShort(actual) => {
                write!(
                    formatter,
                    "has {actual} hex digits, fewer than {DIGEST_HEX_MINIMUM}"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("the {field} is empty")]
    Empty { field: Field },
    #[error(
        "invalid {field} {input:?}: empty path component (a leading, trailing or doubled '/')"
    )]
    EmptyComponent { field: Field, input: String },
    #[error("invalid {field} {input:?}: path component {component:?} {problem}")]
    InvalidComponent {
        field: Field,
        input: String,
        component: String,
        problem: ComponentProblem,
    },
    #[error("invalid {field} {input:?}: {domain:?} is not a valid registry host[:port]")]
    InvalidDomain {
        field: Field,
        input: String,
        domain: String,
    },
    #[error("invalid {field} {input:?}: tag {tag:?} {problem}")]
    InvalidTag {
        field: Field,
        input: String,
        tag: String,
        problem: TagProblem,
    },
    #[error("invalid {field} {input:?}: digest {digest:?} {problem}")]
    InvalidDigest {
        field: Field,
        input: String,
        digest: String,
        problem: DigestProblem,
    },
    #[error(
        "invalid {field} {input:?}: the name is {length} characters long, \
         more than {NAME_TOTAL_LENGTH_MAX}"
    )]
    NameTooLong {
        field: Field,
        input: String,
        length: usize,
    },
    #[error("image reference {input:?} is an image ID, not a name")]
    ImageId { input: String },
    #[error(
        "--to value {input:?} starts with the registry {domain:?}, \
         but --to is relative to --registry"
    )]
    DomainInDestination {
        input: String,
        domain: String,
        relative: String,
    },
    #[error("--to value {input:?} has both a tag and a digest")]
    TagAndDigestInDestination { input: String },
    #[error("username {username:?} cannot be the image namespace: {lowercased:?} {problem}")]
    UsernameNotNamespace {
        username: String,
        lowercased: String,
        problem: ComponentProblem,
    },
}

impl ReferenceError {
    /// A next step the caller can print under the error.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Empty { field } | Self::EmptyComponent { field, .. } => format_hint(*field),
            Self::InvalidComponent {
                field,
                input,
                component,
                problem,
            } => component_hint(*field, input, component, problem),
            Self::InvalidDomain { field, .. } => domain_hint(*field),
            Self::InvalidTag { .. } => "a tag is up to 128 letters, digits, '_', '.' and '-', \
                and does not start with '.' or '-'"
                .to_string(),
            Self::InvalidDigest { .. } => {
                "a digest is \"sha256:\" followed by 64 lowercase hex digits".to_string()
            }
            Self::NameTooLong { .. } => "registry and repository together may be at most 255 \
                characters; choose a shorter name with --to"
                .to_string(),
            Self::ImageId { input } => format!(
                "tag the image and push it by name: `docker tag {input} myapp:dev`, \
                 then push \"myapp:dev\""
            ),
            Self::DomainInDestination {
                domain, relative, ..
            } => format!(
                "put the registry in --registry and keep --to relative: \
                 --registry https://{domain} --to {relative}"
            ),
            Self::TagAndDigestInDestination { .. } => {
                "use REPOSITORY:TAG to push a tag, or REPOSITORY@DIGEST to push by digest"
                    .to_string()
            }
            Self::UsernameNotNamespace { .. } => "choose the repository with \
                --to OWNER/NAME[:TAG], or put the namespace in the --registry URL path \
                (https://HOST/OWNER)"
                .to_string(),
        })
    }
}

/// What a well-formed value of `field` looks like.
fn format_hint(field: Field) -> String {
    match field {
        Field::LocalImage => {
            "an image reference looks like NAME[:TAG][@DIGEST], \
            e.g. \"myapp:dev\" (`docker image ls` lists them)"
        }
        Field::ToFlag => {
            "--to takes REPOSITORY[:TAG|@DIGEST] relative to the registry, \
            e.g. \"giteaadmin/myapp:v1\""
        }
        Field::RegistryPath => {
            "the --registry path is the namespace, \
            e.g. https://gitea.cnoe.localtest.me:8443/giteaadmin"
        }
        Field::RegistryHost => {
            "--registry takes a URL such as https://gitea.cnoe.localtest.me:8443"
        }
        Field::Destination => "choose a valid destination with --to REPOSITORY[:TAG]",
    }
    .to_string()
}

fn component_hint(
    field: Field,
    input: &str,
    component: &str,
    problem: &ComponentProblem,
) -> String {
    match (problem, field) {
        // Gitea resolves owners case-insensitively, but the registry path must be lowercase.
        (ComponentProblem::Uppercase, Field::RegistryPath) => format!(
            "Gitea owners must be lowercase in image paths: \
             write the --registry path as \"{}\"",
            input.to_lowercase()
        ),
        (ComponentProblem::Uppercase, _) => format!(
            "repository paths must be lowercase: write \"{}\" instead of \"{component}\"",
            component.to_lowercase()
        ),
        _ => "path components are lowercase letters and digits joined by \
            '.', '_', '__' or dashes, e.g. \"my-app\""
            .to_string(),
    }
}

fn domain_hint(field: Field) -> String {
    let shape = "a registry is HOST[:PORT], e.g. \"gitea.cnoe.localtest.me:8443\"";
    if field == Field::LocalImage {
        // docker's rule can surprise: "My_Org/app" names a registry because of the uppercase.
        format!(
            "{shape}; the first component counts as a registry when it has \
             '.', ':' or uppercase letters, or is \"localhost\""
        )
    } else {
        shape.to_string()
    }
}

/// A reference to an image in the local Docker or Podman image store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReference {
    registry: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl LocalReference {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let field = Field::LocalImage;
        if input.is_empty() {
            return Err(ReferenceError::Empty { field });
        }
        let parts = split_reference(input);
        let (registry, path) = split_docker_domain(parts.name);
        if let Some(domain) = registry {
            check_domain(domain, field, input)?;
        }
        check_path(path, field, input)?;
        reject_image_id(registry, path, parts.tag, input)?;
        check_optional_tag(parts.tag, field, input)?;
        check_optional_digest(parts.digest, field, input)?;
        check_name_length(parts.name, field, input)?;
        Ok(Self {
            registry: registry.map(str::to_string),
            path: path.to_string(),
            tag: parts.tag.map(str::to_string),
            digest: parts.digest.map(str::to_string),
        })
    }

    /// The registry host[:port] the user wrote, if any.
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The repository path without registry, e.g. "org/myapp".
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The last path component: "myapp" for "ghcr.io/org/myapp:1".
    pub fn name(&self) -> &str {
        let path = self.path();
        path.rsplit_once('/').map_or(path, |(_, last)| last)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// Names to ask the daemon for, in order. Docker resolves "myapp" itself; Podman's
    /// compat API stores locally built images as "localhost/myapp", so for a reference
    /// without a domain also try "localhost/<path>[:tag][@digest]". Always include the tag
    /// ":latest" when neither tag nor digest was given.
    pub fn daemon_candidates(&self) -> Vec<String> {
        let as_written = self.to_string();
        match self.registry() {
            Some(_) => vec![as_written],
            None => {
                let podman_local = format!("{PODMAN_LOCAL_DOMAIN}/{as_written}");
                vec![as_written, podman_local]
            }
        }
    }
}

impl FromStr for LocalReference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for LocalReference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(formatter, "{registry}/")?;
        }
        formatter.write_str(&self.path)?;
        match (&self.tag, &self.digest) {
            (Some(tag), _) => write!(formatter, ":{tag}")?,
            (None, None) => write!(formatter, ":{DEFAULT_TAG}")?,
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            write!(formatter, "@{digest}")?;
        }
        Ok(())
    }
}

/// What the manifest is pushed under: exactly one of tag or digest, never neither.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PushTarget {
    Tag(String),
    Digest(String),
}

/// Where an image goes in the target registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    registry: String,
    repository: String,
    target: PushTarget,
}

impl Destination {
    /// host[:port] of the registry.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository inside the registry, e.g. "giteaadmin/myapp".
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        match &self.target {
            PushTarget::Tag(tag) => Some(tag),
            PushTarget::Digest(_) => None,
        }
    }

    /// Set only when pushing by digest; a tagged push learns its digest from the registry.
    pub fn digest(&self) -> Option<&str> {
        match &self.target {
            PushTarget::Tag(_) => None,
            PushTarget::Digest(digest) => Some(digest),
        }
    }

    /// What goes in /v2/<repository>/manifests/<this>: the tag, else the digest.
    pub fn manifest_reference(&self) -> &str {
        match &self.target {
            PushTarget::Tag(tag) => tag,
            PushTarget::Digest(digest) => digest,
        }
    }

    /// "host/ns/name:tag@sha256:..." (or "host/ns/name@sha256:..." when pushed by digest):
    /// the one line printed on stdout.
    pub fn pinned(&self, manifest_digest: &str) -> String {
        match &self.target {
            PushTarget::Tag(tag) => format!(
                "{}/{}:{tag}@{manifest_digest}",
                self.registry, self.repository
            ),
            PushTarget::Digest(_) => {
                format!("{}/{}@{manifest_digest}", self.registry, self.repository)
            }
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.registry, self.repository)?;
        match &self.target {
            PushTarget::Tag(tag) => write!(formatter, ":{tag}"),
            PushTarget::Digest(digest) => write!(formatter, "@{digest}"),
        }
    }
}

/// The inputs that decide where an image is pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestinationRequest<'a> {
    /// host[:port] from the --registry URL, already lowercase.
    pub registry_host: &'a str,
    /// Path of the --registry URL without slashes ("team" or "team/sub"), the namespace.
    pub registry_path: Option<&'a str>,
    /// When known, lowercased it is the default namespace
    /// (Gitea owner rule: giteaAdmin -> giteaadmin).
    pub username: Option<&'a str>,
    /// The --to flag: "REPOSITORY[:TAG|@DIGEST]" relative to the registry,
    /// e.g. "giteaadmin/tools/myapp:v1".
    pub explicit: Option<&'a str>,
}

/// Decides the destination of `local`: `--to` when given (taken as the whole repository,
/// so the --registry path and username are not used), else `<namespace>/<image name>` with
/// the namespace from the --registry path, else from the lowercased username, else none.
pub fn destination(
    local: &LocalReference,
    request: &DestinationRequest,
) -> Result<Destination, ReferenceError> {
    let registry = request.registry_host;
    check_registry_host(registry)?;
    let (repository, target) = match request.explicit {
        Some(explicit) => explicit_repository(explicit, local)?,
        None => (default_repository(local, request)?, default_target(local)),
    };
    let full_name = format!("{registry}/{repository}");
    check_name_length(&full_name, Field::Destination, &full_name)?;
    Ok(Destination {
        registry: registry.to_string(),
        repository,
        target,
    })
}

fn check_registry_host(registry: &str) -> Result<(), ReferenceError> {
    if registry.is_empty() {
        return Err(ReferenceError::Empty {
            field: Field::RegistryHost,
        });
    }
    check_domain(registry, Field::RegistryHost, registry)
}

/// Parses `--to`, whose repository is taken as is (no namespace is added).
fn explicit_repository(
    explicit: &str,
    local: &LocalReference,
) -> Result<(String, PushTarget), ReferenceError> {
    let field = Field::ToFlag;
    if explicit.is_empty() {
        return Err(ReferenceError::Empty { field });
    }
    let parts = split_reference(explicit);
    reject_domain_in_destination(parts.name, explicit)?;
    check_path(parts.name, field, explicit)?;
    check_optional_tag(parts.tag, field, explicit)?;
    check_optional_digest(parts.digest, field, explicit)?;
    let target = match (parts.tag, parts.digest) {
        (Some(_), Some(_)) => {
            return Err(ReferenceError::TagAndDigestInDestination {
                input: explicit.to_string(),
            });
        }
        (Some(tag), None) => PushTarget::Tag(tag.to_string()),
        (None, Some(digest)) => PushTarget::Digest(digest.to_string()),
        (None, None) => PushTarget::Tag(local.tag().unwrap_or(DEFAULT_TAG).to_string()),
    };
    Ok((parts.name.to_string(), target))
}

/// `--to` names a repository inside `--registry`; a domain in it would silently become a path.
fn reject_domain_in_destination(name: &str, explicit: &str) -> Result<(), ReferenceError> {
    // `name` is a prefix of `explicit`, so a '/' in `name` is also the first '/' of `explicit`.
    let Some((first, relative)) = explicit.split_once('/').filter(|_| name.contains('/')) else {
        return Ok(());
    };
    if !looks_like_domain(first) {
        return Ok(());
    }
    Err(ReferenceError::DomainInDestination {
        input: explicit.to_string(),
        domain: first.to_string(),
        relative: relative.to_string(),
    })
}

fn default_repository(
    local: &LocalReference,
    request: &DestinationRequest,
) -> Result<String, ReferenceError> {
    Ok(match namespace(request)? {
        Some(namespace) => format!("{namespace}/{}", local.name()),
        None => local.name().to_string(),
    })
}

/// A digest-only local reference is pushed by digest; otherwise its tag (default "latest").
fn default_target(local: &LocalReference) -> PushTarget {
    match (local.tag(), local.digest()) {
        (Some(tag), _) => PushTarget::Tag(tag.to_string()),
        (None, Some(digest)) => PushTarget::Digest(digest.to_string()),
        (None, None) => PushTarget::Tag(DEFAULT_TAG.to_string()),
    }
}

fn namespace(request: &DestinationRequest) -> Result<Option<String>, ReferenceError> {
    // Surrounding slashes are tolerated: "/team/" is how a URL path naturally looks.
    let registry_path = request
        .registry_path
        .map(|path| path.trim_matches('/'))
        .filter(|path| !path.is_empty());
    if let Some(path) = registry_path {
        check_path(path, Field::RegistryPath, path)?;
        return Ok(Some(path.to_string()));
    }
    match request.username.filter(|username| !username.is_empty()) {
        Some(username) => username_namespace(username).map(Some),
        None => Ok(None),
    }
}

/// Gitea owners are case-insensitive but appear lowercase in registry paths.
fn username_namespace(username: &str) -> Result<String, ReferenceError> {
    let lowercased = username.to_lowercase();
    match check_path_component(&lowercased) {
        Ok(()) => Ok(lowercased),
        Err(problem) => Err(ReferenceError::UsernameNotNamespace {
            username: username.to_string(),
            lowercased,
            problem,
        }),
    }
}

/// The textual pieces of `name[:tag][@digest]`, before validation.
struct ReferenceParts<'a> {
    name: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

fn split_reference(input: &str) -> ReferenceParts<'_> {
    let (name_and_tag, digest) = match input.split_once('@') {
        Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
        None => (input, None),
    };
    // A ':' before the last '/' belongs to the domain's port, not to a tag.
    let last_component_start = name_and_tag.rfind('/').map_or(0, |slash| slash + 1);
    match name_and_tag[last_component_start..].find(':') {
        Some(colon) => {
            let split_at = last_component_start + colon;
            ReferenceParts {
                name: &name_and_tag[..split_at],
                tag: Some(&name_and_tag[split_at + 1..]),
                digest,
            }
        }
        None => ReferenceParts {
            name: name_and_tag,
            tag: None,
            digest,
        },
    }
}

/// docker's splitDockerDomain: the first of several components is a domain when it has a
/// '.' or ':', is "localhost", or has uppercase letters (which a path may not have).
fn split_docker_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if looks_like_domain(first) || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn looks_like_domain(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

fn check_domain(domain: &str, field: Field, input: &str) -> Result<(), ReferenceError> {
    if is_valid_domain(domain) {
        Ok(())
    } else {
        Err(ReferenceError::InvalidDomain {
            field,
            input: input.to_string(),
            domain: domain.to_string(),
        })
    }
}

/// host[:port] where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn is_valid_domain(domain: &str) -> bool {
    let Some((host, port)) = split_host_port(domain) else {
        return false;
    };
    let port_is_valid =
        port.is_none_or(|port| !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()));
    port_is_valid && is_valid_host(host)
}

fn split_host_port(domain: &str) -> Option<(&str, Option<&str>)> {
    if domain.starts_with('[') {
        let close = domain.find(']')?;
        let (host, rest) = domain.split_at(close + 1);
        return match rest {
            "" => Some((host, None)),
            _ => rest.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    Some(match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    })
}

fn is_valid_host(host: &str) -> bool {
    if let Some(inside) = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return !inside.is_empty() && inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
    }
    !host.is_empty() && host.split('.').all(is_valid_domain_label)
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_valid_domain_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'-')
        }
        _ => false,
    }
}

fn check_path(path: &str, field: Field, input: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err(ReferenceError::EmptyComponent {
                field,
                input: input.to_string(),
            });
        }
        check_path_component(component).map_err(|problem| ReferenceError::InvalidComponent {
            field,
            input: input.to_string(),
            component: component.to_string(),
            problem,
        })?;
    }
    Ok(())
}

/// `[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*` for a non-empty component.
pub fn check_path_component(component: &str) -> Result<(), ComponentProblem> {
    // Characters nothing can fix come first; uppercase has the easy lowercase fix.
    let is_allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some(found) = component.chars().find(|c| !is_allowed(*c)) {
        return Err(ComponentProblem::InvalidCharacter(found));
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ComponentProblem::Uppercase);
    }
    check_component_edges(component)?;
    check_separators(component)
}

fn check_component_edges(component: &str) -> Result<(), ComponentProblem> {
    let mut characters = component.chars();
    if let Some(first) = characters.next().filter(|c| !c.is_ascii_alphanumeric()) {
        return Err(ComponentProblem::BadStart(first));
    }
    match characters
        .next_back()
        .filter(|c| !c.is_ascii_alphanumeric())
    {
        Some(last) => Err(ComponentProblem::BadEnd(last)),
        None => Ok(()),
    }
}

/// Each run of non-alphanumerics must be ".", "_", "__" or only dashes.
fn check_separators(component: &str) -> Result<(), ComponentProblem> {
    for separator in component
        .split(|c: char| c.is_ascii_alphanumeric())
        .filter(|run| !run.is_empty())
    {
        let is_dashes = separator.chars().all(|c| c == '-');
        if !(matches!(separator, "." | "_" | "__") || is_dashes) {
            return Err(ComponentProblem::BadSeparator(separator.to_string()));
        }
    }
    Ok(())
}

/// docker refuses a bare 64-hex name because it is an image ID; "sha256:<hex>" splits as
/// name "sha256" and a valid tag, so it needs catching too.
fn reject_image_id(
    registry: Option<&str>,
    path: &str,
    tag: Option<&str>,
    input: &str,
) -> Result<(), ReferenceError> {
    let is_full_hex = |text: &str| {
        text.len() == IMAGE_ID_HEX_LENGTH
            && text
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    };
    let bare_id = tag.is_none() && is_full_hex(path);
    let prefixed_id = path == "sha256" && tag.is_some_and(is_full_hex);
    if registry.is_none() && (bare_id || prefixed_id) {
        return Err(ReferenceError::ImageId {
            input: input.to_string(),
        });
    }
    Ok(())
}

fn check_optional_tag(tag: Option<&str>, field: Field, input: &str) -> Result<(), ReferenceError> {
    let Some(tag) = tag else {
        return Ok(());
    };
    check_tag(tag).map_err(|problem| ReferenceError::InvalidTag {
        field,
        input: input.to_string(),
        tag: tag.to_string(),
        problem,
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
pub fn check_tag(tag: &str) -> Result<(), TagProblem> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut characters = tag.chars();
    match characters.next() {
        None => return Err(TagProblem::Empty),
        Some(first) if !is_word(first) => return Err(TagProblem::BadStart(first)),
        Some(_) => {}
    }
    if let Some(found) = characters.find(|c| !(is_word(*c) || matches!(c, '.' | '-'))) {
        return Err(TagProblem::InvalidCharacter(found));
    }
    match tag.len() {
        length if length > TAG_LENGTH_MAX => Err(TagProblem::TooLong(length)),
        _ => Ok(()),
    }
}

fn check_optional_digest(
    digest: Option<&str>,
    field: Field,
    input: &str,
) -> Result<(), ReferenceError> {
    let Some(digest) = digest else {
        return Ok(());
    };
    check_digest(digest).map_err(|problem| ReferenceError::InvalidDigest {
        field,
        input: input.to_string(),
        digest: digest.to_string(),
        problem,
    })
}

/// `algorithm:hex`; the algorithms we know need their exact lowercase length.
pub fn check_digest(digest: &str) -> Result<(), DigestProblem> {
    if digest.is_empty() {
        return Err(DigestProblem::Empty);
    }
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or(DigestProblem::MissingSeparator)?;
    if !is_valid_digest_algorithm(algorithm) {
        return Err(DigestProblem::InvalidAlgorithm(algorithm.to_string()));
    }
    match KNOWN_DIGEST_ALGORITHMS
        .iter()
        .find(|(known, _)| *known == algorithm)
    {
        Some((_, expected)) => check_known_hex(algorithm, hex, *expected),
        None => check_unknown_hex(hex),
    }
}

fn check_known_hex(algorithm: &str, hex: &str, expected: usize) -> Result<(), DigestProblem> {
    if let Some(found) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(DigestProblem::InvalidCharacter(found));
    }
    if hex.len() != expected {
        return Err(DigestProblem::WrongLength {
            algorithm: algorithm.to_string(),
            expected,
            actual: hex.len(),
        });
    }
    Ok(())
}

fn check_unknown_hex(hex: &str) -> Result<(), DigestProblem> {
    if let Some(found) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(DigestProblem::InvalidCharacter(found));
    }
    if hex.len() < DIGEST_HEX_MINIMUM {
        return Err(DigestProblem::TooShort(hex.len()));
    }
    Ok(())
}

/// `[A-Za-z][A-Za-z0-9]*([+._-][A-Za-z][A-Za-z0-9]*)*`
fn is_valid_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['+', '.', '_', '-']).all(|component| {
        let mut characters = component.chars();
        characters
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic())
            && characters.all(|c| c.is_ascii_alphanumeric())
    })
}

fn check_name_length(name: &str, field: Field, input: &str) -> Result<(), ReferenceError> {
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong {
            field,
            input: input.to_string(),
            length: name.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ComponentProblem::{BadEnd, BadSeparator, BadStart, InvalidCharacter, Uppercase};

    const SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const OTHER_SHA256: &str =
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const HOST: &str = "gitea.cnoe.localtest.me:8443";

    /// Tables write "{D}" for SHA256, "{E}" for OTHER_SHA256 and "{S512}" for a sha512 digest.
    fn expand(text: &str) -> String {
        text.replace("{D}", SHA256)
            .replace("{E}", OTHER_SHA256)
            .replace("{S512}", &format!("sha512:{}", "ab".repeat(64)))
    }

    fn parsed(input: &str) -> LocalReference {
        match LocalReference::parse(input) {
            Ok(reference) => reference,
            Err(error) => panic!("{input:?} should parse: {error}"),
        }
    }

    fn parse_error(input: &str) -> ReferenceError {
        match LocalReference::parse(input) {
            Ok(reference) => panic!("{input:?} should not parse, got {reference:?}"),
            Err(error) => error,
        }
    }

    /// "registry | path | tag | digest", with "-" for an absent part.
    fn describe(reference: &LocalReference) -> String {
        let registry = reference.registry().unwrap_or("-");
        let tag = reference.tag().unwrap_or("-");
        let digest = reference.digest().unwrap_or("-");
        format!("{registry} | {} | {tag} | {digest}", reference.path())
    }

    #[test]
    fn parses_valid_references_into_their_parts() {
        let cases = [
            ("myapp", "- | myapp | - | -"),
            ("myapp:v1", "- | myapp | v1 | -"),
            ("org/myapp:1.0", "- | org/myapp | 1.0 | -"),
            ("ghcr.io/org/myapp:1", "ghcr.io | org/myapp | 1 | -"),
            ("localhost/myapp", "localhost | myapp | - | -"),
            ("localhost:5000/a/b:dev", "localhost:5000 | a/b | dev | -"),
            ("[::1]:5000/myapp", "[::1]:5000 | myapp | - | -"),
            (
                "127.0.0.1:5000/a/b/c:T_1",
                "127.0.0.1:5000 | a/b/c | T_1 | -",
            ),
            // docker: an uppercase first component can only be a registry.
            ("MyRegistry/app", "MyRegistry | app | - | -"),
            ("team/a.b-c__d/e---f", "- | team/a.b-c__d/e---f | - | -"),
            (
                "docker.io/library/ubuntu:22.04",
                "docker.io | library/ubuntu | 22.04 | -",
            ),
            // Without a '/', docker reads "localhost:5000" as name "localhost", tag "5000".
            ("localhost", "- | localhost | - | -"),
            ("localhost:5000", "- | localhost | 5000 | -"),
            ("myapp@{D}", "- | myapp | - | {D}"),
            ("myapp:v1@{D}", "- | myapp | v1 | {D}"),
            ("org/myapp@{S512}", "- | org/myapp | - | {S512}"),
            (
                "myapp@multihash+base58:A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1",
                "- | myapp | - | multihash+base58:A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1",
            ),
        ];
        for (input, expected) in cases {
            let input = expand(input);
            let reference = parsed(&input);
            assert_eq!(describe(&reference), expand(expected), "parts of {input:?}");
            assert_eq!(
                input.parse::<LocalReference>().ok(),
                Some(reference),
                "{input:?}"
            );
        }
        let longest_tag = "t".repeat(128);
        assert_eq!(
            parsed(&format!("myapp:{longest_tag}")).tag(),
            Some(longest_tag.as_str())
        );
    }

    #[test]
    fn name_is_the_last_path_component() {
        let cases = [
            ("myapp", "myapp"),
            ("org/myapp:1", "myapp"),
            ("ghcr.io/org/deep/my-app:1", "my-app"),
            ("localhost/x", "x"),
            ("localhost:5000", "localhost"),
        ];
        for (input, name) in cases {
            assert_eq!(parsed(input).name(), name, "name of {input:?}");
        }
    }

    #[test]
    fn display_normalises_to_an_explicit_tag() {
        let cases = [
            ("myapp", "myapp:latest"),
            ("myapp:v1", "myapp:v1"),
            ("ghcr.io/org/myapp", "ghcr.io/org/myapp:latest"),
            ("myapp@{D}", "myapp@{D}"),
            ("myapp:v1@{D}", "myapp:v1@{D}"),
            ("[::1]:5000/a", "[::1]:5000/a:latest"),
        ];
        for (input, display) in cases {
            assert_eq!(
                parsed(&expand(input)).to_string(),
                expand(display),
                "{input:?}"
            );
        }
    }

    /// What a parse error should be, minus the input and field that the test fills in.
    enum Expected {
        Empty,
        EmptyComponent,
        Component(&'static str, ComponentProblem),
        Domain(&'static str),
        Tag(TagProblem),
        Digest(DigestProblem),
        ImageId,
        TooLong(usize),
    }

    impl Expected {
        fn error(self, input: &str) -> ReferenceError {
            let field = Field::LocalImage;
            let input = input.to_string();
            let parts = split_reference(&input);
            let (tag, digest) = (
                parts.tag.unwrap_or_default(),
                parts.digest.unwrap_or_default(),
            );
            let (tag, digest) = (tag.to_string(), digest.to_string());
            match self {
                Self::Empty => ReferenceError::Empty { field },
                Self::EmptyComponent => ReferenceError::EmptyComponent { field, input },
                Self::Component(component, problem) => {
                    let component = component.to_string();
                    ReferenceError::InvalidComponent {
                        field,
                        input,
                        component,
                        problem,
                    }
                }
                Self::Domain(domain) => ReferenceError::InvalidDomain {
                    field,
                    input,
                    domain: domain.to_string(),
                },
                Self::Tag(problem) => ReferenceError::InvalidTag {
                    field,
                    input,
                    tag,
                    problem,
                },
                Self::Digest(problem) => ReferenceError::InvalidDigest {
                    field,
                    input,
                    digest,
                    problem,
                },
                Self::ImageId => ReferenceError::ImageId { input },
                Self::TooLong(length) => ReferenceError::NameTooLong {
                    field,
                    input,
                    length,
                },
            }
        }
    }

    #[test]
    fn rejects_invalid_references_with_the_reason() {
        use DigestProblem as D;
        use Expected::*;
        let hex = &SHA256[7..];
        let wrong_length = |actual| D::WrongLength {
            algorithm: "sha256".into(),
            expected: 64,
            actual,
        };
        let cases = vec![
            (String::new(), Empty),
            ("MyApp".into(), Component("MyApp", Uppercase)),
            ("org/MyApp:v1".into(), Component("MyApp", Uppercase)),
            ("my app".into(), Component("my app", InvalidCharacter(' '))),
            ("my+app".into(), Component("my+app", InvalidCharacter('+'))),
            ("-app".into(), Component("-app", BadStart('-'))),
            ("app-".into(), Component("app-", BadEnd('-'))),
            ("a..b".into(), Component("a..b", BadSeparator("..".into()))),
            ("a_.b".into(), Component("a_.b", BadSeparator("_.".into()))),
            (
                "a___b".into(),
                Component("a___b", BadSeparator("___".into())),
            ),
            ("a//b".into(), EmptyComponent),
            ("/a".into(), EmptyComponent),
            ("a/".into(), EmptyComponent),
            ("ghcr.io/".into(), EmptyComponent),
            ("myapp:".into(), Tag(TagProblem::Empty)),
            ("myapp:-x".into(), Tag(TagProblem::BadStart('-'))),
            ("myapp:.x".into(), Tag(TagProblem::BadStart('.'))),
            ("myapp:v1:v2".into(), Tag(TagProblem::InvalidCharacter(':'))),
            (
                format!("myapp:{}", "t".repeat(129)),
                Tag(TagProblem::TooLong(129)),
            ),
            ("myapp@".into(), Digest(D::Empty)),
            ("myapp@abc".into(), Digest(D::MissingSeparator)),
            (
                "myapp@1abc:00".into(),
                Digest(D::InvalidAlgorithm("1abc".into())),
            ),
            (
                "myapp@sha+:00".into(),
                Digest(D::InvalidAlgorithm("sha+".into())),
            ),
            (
                "myapp@:00".into(),
                Digest(D::InvalidAlgorithm(String::new())),
            ),
            ("myapp@sha256:abc".into(), Digest(wrong_length(3))),
            ("myapp@sha256:".into(), Digest(wrong_length(0))),
            (
                format!("myapp@sha256:{}", hex.to_uppercase()),
                Digest(D::InvalidCharacter('E')),
            ),
            ("myapp@md5:0123".into(), Digest(D::TooShort(4))),
            ("myapp@sha256:x@y".into(), Digest(D::InvalidCharacter('x'))),
            ("exa_mple.com/app".into(), Domain("exa_mple.com")),
            ("host:port/app".into(), Domain("host:port")),
            ("host:/app".into(), Domain("host:")),
            ("-host.io/app".into(), Domain("-host.io")),
            ("a..io/app".into(), Domain("a..io")),
            ("[::1/app".into(), Domain("[::1")),
            ("[]:5000/app".into(), Domain("[]:5000")),
            ("[::1]5000/app".into(), Domain("[::1]5000")),
            (hex.into(), ImageId),
            (SHA256.into(), ImageId),
            (format!("org/{}", "a".repeat(252)), TooLong(256)),
        ];
        for (input, expected) in cases {
            let error = parse_error(&input);
            assert_eq!(error, expected.error(&input), "error for {input:?}");
            assert!(error.hint().is_some(), "hint for {input:?}");
            if !input.is_empty() {
                let quoted = format!("{input:?}");
                assert!(
                    error.to_string().contains(&quoted),
                    "{error} should quote the input"
                );
            }
        }
    }

    #[test]
    fn image_ids_are_only_rejected_without_a_registry() {
        let hex = &SHA256[7..];
        assert!(LocalReference::parse(&format!("localhost/{hex}")).is_ok());
        assert!(LocalReference::parse(&format!("org/{hex}")).is_ok());
        // Short IDs are indistinguishable from names; docker resolves names first.
        assert!(LocalReference::parse(&hex[..12]).is_ok());
    }

    #[test]
    fn accepts_names_up_to_the_total_length_limit() {
        let longest = format!("org/{}", "a".repeat(251));
        assert_eq!(parsed(&longest).path().len(), 255);
        // The domain counts towards the limit, as in distribution; the tag does not.
        let with_domain = format!("r.io/{}", "a".repeat(251));
        let error = parse_error(&with_domain);
        assert!(
            matches!(error, ReferenceError::NameTooLong { length: 256, .. }),
            "{error}"
        );
        assert!(LocalReference::parse(&format!("{longest}:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn hints_suggest_the_fix() {
        let cases = [
            ("org/MyApp:v1", "write \"myapp\" instead of \"MyApp\""),
            ("a..b", "joined by '.', '_', '__' or dashes"),
            ("My_Org/app", "has '.', ':' or uppercase letters"),
            ("myapp:-x", "does not start with '.' or '-'"),
            ("myapp@sha256:0", "64 lowercase hex digits"),
            (SHA256, "`docker tag sha256:"),
            ("", "NAME[:TAG][@DIGEST]"),
        ];
        for (input, expected) in cases {
            let hint = parse_error(input).hint().unwrap_or_default();
            assert!(hint.contains(expected), "hint for {input:?} was {hint:?}");
        }
    }

    #[test]
    fn daemon_candidates_add_latest_and_the_podman_local_name() {
        let cases: [(&str, &[&str]); 8] = [
            ("myapp", &["myapp:latest", "localhost/myapp:latest"]),
            ("myapp:v1", &["myapp:v1", "localhost/myapp:v1"]),
            (
                "org/myapp",
                &["org/myapp:latest", "localhost/org/myapp:latest"],
            ),
            ("myapp@{D}", &["myapp@{D}", "localhost/myapp@{D}"]),
            ("myapp:v1@{D}", &["myapp:v1@{D}", "localhost/myapp:v1@{D}"]),
            ("localhost/myapp", &["localhost/myapp:latest"]),
            ("ghcr.io/org/myapp:1", &["ghcr.io/org/myapp:1"]),
            ("localhost:5000/myapp", &["localhost:5000/myapp:latest"]),
        ];
        for (input, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|name| expand(name)).collect();
            assert_eq!(
                parsed(&expand(input)).daemon_candidates(),
                expected,
                "{input:?}"
            );
        }
    }

    fn with_optional(base: &str, separator: char, part: Option<&str>) -> String {
        part.map_or_else(
            || base.to_string(),
            |part| format!("{base}{separator}{part}"),
        )
    }

    /// Every combination of parts survives display and re-parsing unchanged.
    #[test]
    fn display_round_trips_for_every_combination_of_parts() {
        let registries = [
            None,
            Some("ghcr.io"),
            Some("localhost:5000"),
            Some("[::1]:5000"),
            Some("Registry"),
        ];
        let paths = [
            "myapp",
            "org/myapp",
            "a/b/c",
            "my_app",
            "my__app",
            "my--app",
            "a.b",
            "0",
        ];
        let tags = [
            None,
            Some("v1"),
            Some("latest"),
            Some("_x"),
            Some("1.0-rc.1"),
            Some("UPPER"),
        ];
        let sha512 = expand("{S512}");
        let digests = [None, Some(SHA256), Some(sha512.as_str())];
        for registry in registries {
            for path in paths {
                for tag in tags {
                    for digest in digests {
                        let name = registry
                            .map_or(path.to_string(), |registry| format!("{registry}/{path}"));
                        let input = with_optional(&with_optional(&name, ':', tag), '@', digest);
                        let normal_tag = tag.or(digest.is_none().then_some("latest"));
                        let normalised =
                            with_optional(&with_optional(&name, ':', normal_tag), '@', digest);
                        let reference = parsed(&input);
                        let parts = (
                            reference.registry(),
                            reference.path(),
                            reference.tag(),
                            reference.digest(),
                        );
                        assert_eq!(parts, (registry, path, tag, digest), "parts of {input:?}");
                        assert_eq!(reference.to_string(), normalised, "display of {input:?}");
                        assert_eq!(
                            parsed(&normalised).to_string(),
                            normalised,
                            "re-parse of {normalised:?}"
                        );
                        for candidate in reference.daemon_candidates() {
                            let candidate_reference = parsed(&candidate);
                            assert_eq!(
                                candidate_reference.name(),
                                reference.name(),
                                "{candidate:?}"
                            );
                            assert_eq!(candidate_reference.digest(), digest, "{candidate:?}");
                            assert!(
                                candidate_reference.tag().is_some() || digest.is_some(),
                                "{candidate:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// An independent backtracking matcher for `[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*`.
    fn grammar_accepts_component(text: &[u8]) -> bool {
        let is_alphanumeric = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
        let run = text.iter().take_while(|byte| is_alphanumeric(byte)).count();
        (1..=run).any(|taken| grammar_accepts_rest(&text[taken..]))
    }

    fn grammar_accepts_rest(text: &[u8]) -> bool {
        if text.is_empty() {
            return true;
        }
        let mut separator_lengths = Vec::new();
        if text.starts_with(b".") || text.starts_with(b"_") {
            separator_lengths.push(1);
        }
        if text.starts_with(b"__") {
            separator_lengths.push(2);
        }
        let dashes = text.iter().take_while(|byte| **byte == b'-').count();
        separator_lengths.extend(1..=dashes);
        separator_lengths
            .into_iter()
            .any(|length| grammar_accepts_component(&text[length..]))
    }

    /// Every string over `alphabet` up to `max_length` characters, the empty one first.
    fn all_strings(alphabet: &[char], max_length: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut previous = vec![String::new()];
        for _ in 0..max_length {
            previous = previous
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            all.extend(previous.iter().cloned());
        }
        all
    }

    #[test]
    fn path_component_check_agrees_with_the_grammar_exhaustively() {
        let all = all_strings(&['a', '0', '.', '_', '-', 'A', '@'], 5);
        assert_eq!(all.len(), 1 + 7 + 49 + 343 + 2401 + 16807);
        for text in all.into_iter().skip(1) {
            let result = check_path_component(&text);
            let context = format!("{text:?}: {result:?}");
            assert_eq!(
                result.is_ok(),
                grammar_accepts_component(text.as_bytes()),
                "{context}"
            );
            let only_uppercase_wrong = text.contains('A') && !text.contains('@');
            assert_eq!(result == Err(Uppercase), only_uppercase_wrong, "{context}");
            assert_eq!(
                result == Err(InvalidCharacter('@')),
                text.contains('@'),
                "{context}"
            );
        }
    }

    #[test]
    fn tag_check_agrees_with_the_grammar_exhaustively() {
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        for text in all_strings(&['a', 'Z', '0', '_', '.', '-', '!'], 4) {
            let mut characters = text.chars();
            let expected = characters.next().is_some_and(is_word)
                && characters.all(|c| is_word(c) || c == '.' || c == '-');
            assert_eq!(check_tag(&text).is_ok(), expected, "{text:?}");
        }
        for length in 120..=140 {
            let text = "t".repeat(length);
            let expected = if length <= 128 {
                Ok(())
            } else {
                Err(TagProblem::TooLong(length))
            };
            assert_eq!(check_tag(&text), expected, "length {length}");
        }
    }

    #[test]
    fn digest_lengths_are_exact_for_known_algorithms() {
        for (algorithm, expected) in KNOWN_DIGEST_ALGORITHMS {
            for actual in [0, 1, expected - 1, expected, expected + 1] {
                let digest = format!("{algorithm}:{}", "a".repeat(actual));
                let result = check_digest(&digest);
                assert_eq!(result.is_ok(), actual == expected, "{digest}: {result:?}");
            }
        }
        // Unknown algorithms only need distribution's syntax: 32 or more hex digits, any case.
        for actual in [31, 32, 33, 200] {
            let digest = format!("blake3:{}", "F".repeat(actual));
            assert_eq!(check_digest(&digest).is_ok(), actual >= 32, "{digest}");
        }
        let algorithms = [
            ("sha256", true),
            ("a.b+c_d-e9", true),
            ("9a", false),
            ("a..b", false),
            ("a!", false),
        ];
        for (algorithm, valid) in algorithms {
            assert_eq!(is_valid_digest_algorithm(algorithm), valid, "{algorithm:?}");
        }
    }

    #[test]
    fn domains_follow_the_host_port_grammar() {
        let valid = [
            "a",
            "ghcr.io",
            "localhost:5000",
            "127.0.0.1",
            "1.2.3.4:443",
            "[::1]",
            "[fe80::1]:5000",
            "My-Host.IO",
            "x-y.z",
        ];
        let invalid = [
            "", ":5000", "host:", "host:50a", "-a.io", "a-.io", "a..io", ".io", "a_b.io", "[::1",
            "[]", "[::g]", "[::1]x", "a:1:2", "a b",
        ];
        for domain in valid {
            assert!(is_valid_domain(domain), "{domain:?} should be valid");
        }
        for domain in invalid {
            assert!(!is_valid_domain(domain), "{domain:?} should be invalid");
        }
    }

    /// Parses "-" as None, anything else (even "") as Some.
    fn optional(text: &str) -> Option<&str> {
        (text != "-").then_some(text)
    }

    fn request<'a>(
        registry_path: &'a str,
        username: &'a str,
        explicit: &'a str,
    ) -> DestinationRequest<'a> {
        DestinationRequest {
            registry_host: HOST,
            registry_path: optional(registry_path),
            username: optional(username),
            explicit: optional(explicit),
        }
    }

    fn destination_for(
        local: &str,
        request: &DestinationRequest,
    ) -> Result<Destination, ReferenceError> {
        destination(&parsed(local), request)
    }

    #[test]
    fn derives_destinations_from_the_namespace_sources() {
        // (local, registry_path, username, --to, destination after the host); "-" is absent.
        let cases = [
            ("myapp", "-", "giteaAdmin", "-", "giteaadmin/myapp:latest"),
            ("myapp:dev", "-", "-", "-", "myapp:dev"),
            ("ghcr.io/org/myapp:1", "team", "-", "-", "team/myapp:1"),
            ("myapp", "team/sub", "-", "-", "team/sub/myapp:latest"),
            ("myapp", "/team/", "-", "-", "team/myapp:latest"),
            ("myapp", "", "-", "-", "myapp:latest"),
            ("myapp", "", "bob", "-", "bob/myapp:latest"),
            ("myapp", "-", "", "-", "myapp:latest"),
            ("myapp", "team", "giteaAdmin", "-", "team/myapp:latest"),
            (
                "localhost/a/b/myapp:x",
                "-",
                "First.Last",
                "-",
                "first.last/myapp:x",
            ),
            ("myapp@{D}", "-", "giteaadmin", "-", "giteaadmin/myapp@{D}"),
            (
                "myapp:v1@{D}",
                "-",
                "giteaadmin",
                "-",
                "giteaadmin/myapp:v1",
            ),
            (
                "myapp:dev",
                "team",
                "a@b",
                "giteaadmin/tools/myapp:v1",
                "giteaadmin/tools/myapp:v1",
            ),
            ("myapp:dev", "-", "-", "tools/x", "tools/x:dev"),
            ("myapp", "-", "-", "x", "x:latest"),
            ("myapp@{D}", "-", "-", "tools/x", "tools/x:latest"),
            ("myapp:dev", "-", "-", "tools/x@{E}", "tools/x@{E}"),
        ];
        for (local, registry_path, username, explicit, expected) in cases {
            let (local, explicit) = (expand(local), expand(explicit));
            let request = request(registry_path, username, &explicit);
            let context = format!("{local:?} with {request:?}");
            let destination = match destination_for(&local, &request) {
                Ok(destination) => destination,
                Err(error) => panic!("{context}: {error}"),
            };
            assert_eq!(
                destination.to_string(),
                format!("{HOST}/{}", expand(expected)),
                "{context}"
            );
            assert_eq!(destination.registry(), HOST, "{context}");
            let (tag, digest) = (destination.tag(), destination.digest());
            assert!(
                tag.is_some() != digest.is_some(),
                "exactly one of tag and digest: {context}"
            );
            assert_eq!(
                Some(destination.manifest_reference()),
                tag.or(digest),
                "{context}"
            );
        }
    }

    #[test]
    fn displays_and_pins_destinations() {
        let cases = [
            ("myapp:v1", "giteaadmin/myapp:v1", "giteaadmin/myapp:v1@{E}"),
            ("myapp@{D}", "giteaadmin/myapp@{D}", "giteaadmin/myapp@{E}"),
            (
                "myapp:v1@{D}",
                "giteaadmin/myapp:v1",
                "giteaadmin/myapp:v1@{E}",
            ),
        ];
        for (local, display, pinned) in cases {
            let request = request("-", "giteaadmin", "-");
            let destination = destination_for(&expand(local), &request).ok();
            let destination =
                destination.unwrap_or_else(|| panic!("{local:?} should have a destination"));
            assert_eq!(
                destination.to_string(),
                format!("{HOST}/{}", expand(display)),
                "{local:?}"
            );
            assert_eq!(
                destination.pinned(OTHER_SHA256),
                format!("{HOST}/{}", expand(pinned)),
                "{local:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_destination_inputs_quoting_them() {
        let long_namespace = "a".repeat(230);
        // ((registry_path, username, --to), message) for local "myapp"; "-" is absent.
        let cases = [
            (
                ("Team", "-", "-"),
                "invalid --registry path \"Team\": \
                 path component \"Team\" contains uppercase letters",
            ),
            (
                ("team//sub", "-", "-"),
                "invalid --registry path \"team//sub\": \
                 empty path component (a leading, trailing or doubled '/')",
            ),
            (
                ("team/s!ub", "-", "-"),
                "invalid --registry path \"team/s!ub\": \
                 path component \"s!ub\" contains '!', which is not allowed",
            ),
            (
                ("-", "Me@Example.com", "-"),
                "username \"Me@Example.com\" cannot be the image namespace: \
                 \"me@example.com\" contains '@', which is not allowed",
            ),
            (
                ("-", "team/x", "-"),
                "username \"team/x\" cannot be the image namespace: \
                 \"team/x\" contains '/', which is not allowed",
            ),
            (
                ("-", "user.", "-"),
                "username \"user.\" cannot be the image namespace: \
                 \"user.\" ends with '.' instead of a lowercase letter or digit",
            ),
            (
                ("-", "-", "gitea.io:8443/giteaadmin/app:v1"),
                "--to value \"gitea.io:8443/giteaadmin/app:v1\" starts with the registry \
                 \"gitea.io:8443\", but --to is relative to --registry",
            ),
            (
                ("-", "-", "localhost/app"),
                "--to value \"localhost/app\" starts with the registry \"localhost\", \
                 but --to is relative to --registry",
            ),
            (("-", "-", ""), "the --to value is empty"),
            (
                ("-", "-", "GiteaAdmin/app"),
                "invalid --to value \"GiteaAdmin/app\": \
                 path component \"GiteaAdmin\" contains uppercase letters",
            ),
            (
                ("-", "-", "app:"),
                "invalid --to value \"app:\": tag \"\" is empty",
            ),
            (
                ("-", "-", "app@sha256:00"),
                "invalid --to value \"app@sha256:00\": \
                 digest \"sha256:00\" has 2 hex digits where sha256 needs 64",
            ),
            (
                ("-", "-", "app:v1@{D}"),
                "--to value \"app:v1@{D}\" has both a tag and a digest",
            ),
            (
                (&long_namespace, "-", "-"),
                "invalid destination \"gitea.cnoe.localtest.me:8443/{L}/myapp\": \
                 the name is 265 characters long, more than 255",
            ),
        ];
        for ((registry_path, username, explicit), message) in cases {
            let explicit = expand(explicit);
            let request = request(registry_path, username, &explicit);
            let error = match destination_for("myapp", &request) {
                Ok(destination) => panic!("{request:?} should fail, got {destination}"),
                Err(error) => error,
            };
            let message = expand(message).replace("{L}", &long_namespace);
            assert_eq!(error.to_string(), message, "{request:?}");
            assert!(error.hint().is_some(), "hint for {error}");
        }
    }

    #[test]
    fn rejects_invalid_registry_hosts() {
        let cases = [
            (
                "",
                ReferenceError::Empty {
                    field: Field::RegistryHost,
                },
            ),
            (
                "bad host",
                ReferenceError::InvalidDomain {
                    field: Field::RegistryHost,
                    input: "bad host".into(),
                    domain: "bad host".into(),
                },
            ),
            (
                "host:port",
                ReferenceError::InvalidDomain {
                    field: Field::RegistryHost,
                    input: "host:port".into(),
                    domain: "host:port".into(),
                },
            ),
        ];
        for (registry_host, expected) in cases {
            let request = DestinationRequest {
                registry_host,
                ..request("-", "-", "-")
            };
            assert_eq!(
                destination_for("myapp", &request).err(),
                Some(expected),
                "{registry_host:?}"
            );
        }
    }

    #[test]
    fn destination_hints_show_the_fix() {
        let cases = [
            (
                request("Team/Sub", "-", "-"),
                "write the --registry path as \"team/sub\"",
            ),
            (
                request("-", "-", "gitea.io:8443/giteaadmin/app:v1"),
                "--registry https://gitea.io:8443 --to giteaadmin/app:v1",
            ),
            (request("-", "me@example.com", "-"), "--to OWNER/NAME[:TAG]"),
            (
                request("-", "-", "Org/app"),
                "write \"org\" instead of \"Org\"",
            ),
            (request("-", "-", ""), "REPOSITORY[:TAG|@DIGEST]"),
        ];
        for (request, expected) in cases {
            let hint = destination_for("myapp", &request)
                .err()
                .and_then(|error| error.hint());
            let hint = hint.unwrap_or_default();
            assert!(hint.contains(expected), "hint for {request:?} was {hint:?}");
        }
    }

    /// Whatever the inputs, a destination is itself a valid fully qualified reference.
    #[test]
    fn destinations_are_valid_references() {
        let locals = [
            "myapp",
            "myapp:v1",
            "org/deep/myapp:1.0",
            "ghcr.io/x/my-app",
            "localhost/my_app:dev",
        ];
        let hosts = [
            HOST,
            "localhost",
            "localhost:5000",
            "127.0.0.1:30000",
            "[::1]:5000",
        ];
        let registry_paths = [None, Some("team"), Some("team/sub-group")];
        let usernames = [None, Some("giteaAdmin"), Some("First.Last")];
        let explicits = [
            None,
            Some("tools/app"),
            Some("a/b/c:v2"),
            Some("x@sha256:00000000000000000000000000000000000000000000000000000000000000ff"),
        ];
        for local in locals {
            for registry_host in hosts {
                for registry_path in registry_paths {
                    for username in usernames {
                        for explicit in explicits {
                            let request = DestinationRequest {
                                registry_host,
                                registry_path,
                                username,
                                explicit,
                            };
                            let destination = match destination_for(local, &request) {
                                Ok(destination) => destination,
                                Err(error) => panic!("{local:?} with {request:?}: {error}"),
                            };
                            let reparsed = parsed(&destination.to_string());
                            assert_eq!(reparsed.registry(), Some(registry_host), "{destination}");
                            assert_eq!(reparsed.path(), destination.repository(), "{destination}");
                            assert_eq!(reparsed.tag(), destination.tag(), "{destination}");
                            assert_eq!(reparsed.digest(), destination.digest(), "{destination}");
                            let pinned = parsed(&destination.pinned(SHA256));
                            assert_eq!(pinned.digest(), Some(SHA256), "{destination}");
                            if explicit.is_none() {
                                let name = parsed(local).name().to_string();
                                assert!(
                                    destination.repository().ends_with(&format!("/{name}"))
                                        || destination.repository() == name
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
