//! Blob uploads: a session opened with POST, filled by PATCH requests that
//! carry `Content-Range` (Gitea refuses a second PATCH without it) and stay
//! below the chunk size (ingress-nginx refuses bodies over 1 GiB), closed by
//! PUT with the digest. A failed PATCH resumes from the offset the registry
//! reports, so only the broken part is sent again.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::error::{display_url, status_error};
use super::{challenge_of, retry, Challenge, Registry, RegistryError, Replay};

/// An open upload: where to send the next bytes, and how many the registry has.
#[derive(Debug)]
pub struct UploadSession {
    location: Url,
    offset: u64,
}

impl UploadSession {
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Lowest transfer rate tolerated for a chunk before it counts as stalled.
const MINIMUM_RATE_BYTES_PER_SECOND: u64 = 256 * 1024;

impl Registry {
    /// Opens an upload session.
    pub async fn start_upload(&self) -> Result<UploadSession, RegistryError> {
        let url = self.url(&format!("/v2/{}/blobs/uploads/", self.config.repository));
        let action = format!(
            "starting a blob upload to {}/{}",
            self.host(),
            self.config.repository
        );
        // A retried POST at worst leaves an unused session behind.
        let response = self
            .send(&action, Method::POST, &url, Replay::Safe, |request| {
                request.header(CONTENT_LENGTH, "0")
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&action, response).await);
        }
        let location = self.location(&action, &response)?;
        self.track(&location, true);
        Ok(UploadSession {
            location,
            offset: 0,
        })
    }

    /// Mounts `digest` from another repository of this registry (201), or
    /// keeps the upload session the registry opened instead (202).
    pub async fn mount_blob(&self, digest: &str, from: &str) -> Result<Mount, RegistryError> {
        let mut url = self.url(&format!("/v2/{}/blobs/uploads/", self.config.repository));
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let action = format!("mounting {digest} from {from}");
        let response = self
            .send(&action, Method::POST, &url, Replay::Safe, |request| {
                request.header(CONTENT_LENGTH, "0")
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => {
                let location = self.location(&action, &response)?;
                self.track(&location, true);
                Ok(Mount::Session(UploadSession {
                    location,
                    offset: 0,
                }))
            }
            _ => Err(status_error(&action, response).await),
        }
    }

    fn track(&self, location: &Url, open: bool) {
        if let Ok(mut uploads) = self.open_uploads.lock() {
            if open {
                uploads.push(location.clone());
            } else {
                uploads.retain(|known| known.path() != location.path());
            }
        }
    }

    /// Appends `chunk` to the upload. Transient failures are retried per the
    /// policy, each retry resuming at the offset the registry reports.
    pub async fn append(
        &self,
        session: &mut UploadSession,
        chunk: Bytes,
        action: &str,
    ) -> Result<(), RegistryError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let policy = self.config.retry;
        let mut sent_from = 0usize;
        let mut retry = 0u32;
        let mut reauthenticated = false;
        loop {
            match self.patch(session, chunk.slice(sent_from..), action).await {
                Ok(()) => return Ok(()),
                Err(PatchFailure::Final(error)) => return Err(error),
                // A token that expired during a long upload: the session is
                // still the registry's, so authenticate again and resume it.
                // Once per chunk; a fixed token cannot be renewed.
                Err(PatchFailure::Unauthorized(challenge)) => {
                    self.reauthenticate_once(
                        &mut reauthenticated,
                        challenge,
                        &format!("{action}: a chunk got 401"),
                    )
                    .await?;
                }
                Err(PatchFailure::Transient(failure)) => {
                    if retry >= policy.max_retries {
                        return Err(RegistryError::GaveUp {
                            action: action.to_owned(),
                            attempts: retry + 1,
                            last: failure,
                        });
                    }
                    retry += 1;
                    let wait = policy.delay(retry, None);
                    self.notify_retry(&format!(
                        "{action}: {failure}; retry {retry} of {} in {:.1} s",
                        policy.max_retries,
                        wait.as_secs_f64()
                    ));
                    tokio::time::sleep(wait).await;
                }
            }
            let chunk_start = session.offset - sent_from as u64;
            let received = self.upload_status(session, action).await?;
            if received < chunk_start || received > chunk_start + chunk.len() as u64 {
                return Err(RegistryError::Protocol {
                    action: action.to_owned(),
                    detail: format!(
                        "the registry reports {received} bytes, outside the chunk {chunk_start}..{}",
                        chunk_start + chunk.len() as u64
                    ),
                });
            }
            sent_from = (received - chunk_start) as usize;
            session.offset = received;
            if sent_from == chunk.len() {
                return Ok(());
            }
            tracing::debug!("{action}: resuming at byte {received}");
        }
    }

    /// One PATCH of `body` at the session's offset.
    async fn patch(
        &self,
        session: &mut UploadSession,
        body: Bytes,
        action: &str,
    ) -> Result<(), PatchFailure> {
        let length = body.len() as u64;
        let start = session.offset;
        let range = format!("{start}-{}", start + length - 1);
        // A body that stops moving is a stall: allow the idle timeout plus the
        // time the chunk needs at a crawl, then give up on this attempt.
        let allowance =
            self.config.idle_timeout + Duration::from_secs(length / MINIMUM_RATE_BYTES_PER_SECOND);
        let url = session.location.clone();
        let result = self
            .execute(
                action,
                Method::PATCH,
                &url,
                Replay::Never,
                true,
                |request| {
                    request
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", range.as_str())
                        .header(CONTENT_LENGTH, length)
                        .timeout(allowance)
                        .body(body.clone())
                },
            )
            .await;
        let response = match result {
            Ok(response) => response,
            Err(RegistryError::Request { source, .. }) if retry::is_transient_error(&source) => {
                return Err(PatchFailure::Transient(crate::error::chain_text(&source)))
            }
            Err(error) => return Err(PatchFailure::Final(error)),
        };
        let status = response.status();
        if status.is_success() {
            session.location = self
                .location(action, &response)
                .map_err(PatchFailure::Final)?;
            session.offset = start + length;
            return Ok(());
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(PatchFailure::Final(RegistryError::TooLarge {
                action: action.to_owned(),
                url: display_url(&url),
                bytes: length,
            }));
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(PatchFailure::Unauthorized(challenge_of(&response)));
        }
        if retry::is_transient_status(status) || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(PatchFailure::Transient(format!(
                "{} answered {status}",
                display_url(&url)
            )));
        }
        Err(PatchFailure::Final(status_error(action, response).await))
    }

    /// How many bytes the registry holds for the session (`GET` on it, whose
    /// `Range: 0-N` means N+1 bytes).
    async fn upload_status(
        &self,
        session: &mut UploadSession,
        action: &str,
    ) -> Result<u64, RegistryError> {
        let url = session.location.clone();
        let response = self
            .send(action, Method::GET, &url, Replay::Safe, |request| request)
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::SessionLost {
                    action: action.to_owned(),
                    url: display_url(&url),
                })
            }
            _ => return Err(status_error(action, response).await),
        }
        if let Ok(location) = self.location(action, &response) {
            session.location = location;
        }
        let range = response
            .headers()
            .get(RANGE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(parse_received(range.as_deref()))
    }

    /// Closes the upload under `digest` after `size` bytes.
    pub async fn finish_upload(
        &self,
        session: UploadSession,
        digest: &str,
        size: u64,
    ) -> Result<(), RegistryError> {
        let action = format!(
            "closing the upload of {digest} to {}/{}",
            self.host(),
            self.config.repository
        );
        if session.offset != size {
            return Err(RegistryError::Protocol {
                action,
                detail: format!("{} bytes were sent for a blob of {size}", session.offset),
            });
        }
        let mut url = session.location.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let response = self
            .send(&action, Method::PUT, &url, Replay::Safe, |request| {
                request.header(CONTENT_LENGTH, "0")
            })
            .await?;
        if !response.status().is_success() {
            // A retried PUT whose first attempt landed finds the session gone;
            // the blob is there all the same.
            if response.status() == StatusCode::NOT_FOUND
                && self.blob_size(digest).await? == Some(size)
            {
                self.track(&session.location, false);
                return Ok(());
            }
            return Err(status_error(&action, response).await);
        }
        self.track(&session.location, false);
        Ok(())
    }

    /// Abandons an upload session (best effort).
    pub async fn cancel_upload(&self, session: UploadSession) {
        self.delete_session(&session.location).await;
    }

    /// Whether the registry no longer holds the session (deleted, or unknown).
    async fn delete_session(&self, location: &Url) -> bool {
        self.track(location, false);
        let result = self
            .execute(
                "cancelling an upload",
                Method::DELETE,
                location,
                Replay::Never,
                true,
                |request| request,
            )
            .await;
        match result {
            Ok(response) => {
                let status = response.status();
                let gone = status.is_success() || status == StatusCode::NOT_FOUND;
                if !gone {
                    tracing::debug!(
                        "could not cancel an upload session: the registry answered {status}"
                    );
                }
                gone
            }
            Err(error) => {
                tracing::debug!("could not cancel an upload session: {error}");
                false
            }
        }
    }

    /// Deletes every session still open (interruption), within `budget`.
    pub async fn cancel_open_uploads(&self, budget: Duration) -> Cancelled {
        let open: Vec<Url> = self
            .open_uploads
            .lock()
            .map(|uploads| uploads.clone())
            .unwrap_or_default();
        let cancelled = std::sync::atomic::AtomicUsize::new(0);
        let deletes = futures_util::future::join_all(open.iter().map(|location| async {
            if self.delete_session(location).await {
                cancelled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
        let _ = tokio::time::timeout(budget, deletes).await;
        Cancelled {
            open: open.len(),
            cancelled: cancelled.into_inner(),
            budget,
        }
    }
}

/// What [`Registry::cancel_open_uploads`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    /// Upload sessions open when the push was interrupted.
    pub open: usize,
    /// Of those, the ones the registry confirmed gone within `budget`.
    pub cancelled: usize,
    pub budget: Duration,
}

impl Cancelled {
    /// The line printed after an interruption; `None` when nothing was open.
    pub fn report(&self) -> Option<String> {
        match (self.open, self.cancelled) {
            (0, _) => None,
            (open, cancelled) if cancelled == open => Some(format!(
                "interrupted: cancelled {open} open upload(s); no tag was written"
            )),
            (open, cancelled) => Some(format!(
                "interrupted: cancelled {cancelled} of {open} open upload(s) (the registry did not \
                 confirm the rest within {} s; it expires them); no tag was written",
                self.budget.as_secs()
            )),
        }
    }
}

/// The answer to a cross-repository mount.
#[derive(Debug)]
pub enum Mount {
    Mounted,
    /// The registry did not mount but opened an upload session to use.
    Session(UploadSession),
}

enum PatchFailure {
    /// Worth another attempt after asking the registry what it has.
    Transient(String),
    /// 401, with the challenge it carried.
    Unauthorized(Option<Challenge>),
    Final(RegistryError),
}

/// `0-1023` -> 1024 bytes received; no header -> nothing received.
/// distribution answers `0-0` for an empty session (and for one byte, which a
/// resumed chunk never is), so `0-0` counts as nothing.
pub fn parse_received(range: Option<&str>) -> u64 {
    let Some(range) = range else { return 0 };
    let range = range.trim().trim_start_matches("bytes=");
    match range.split_once('-') {
        Some((_, end)) => match end.trim().parse::<u64>() {
            Ok(0) | Err(_) => 0,
            Ok(end) => end + 1,
        },
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interruption_report_says_what_was_cancelled() {
        let report = |open, cancelled| {
            Cancelled {
                open,
                cancelled,
                budget: Duration::from_secs(3),
            }
            .report()
        };
        assert_eq!(report(0, 0), None);
        assert_eq!(
            report(2, 2).as_deref(),
            Some("interrupted: cancelled 2 open upload(s); no tag was written")
        );
        assert_eq!(
            report(2, 1).as_deref(),
            Some(
                "interrupted: cancelled 1 of 2 open upload(s) (the registry did not confirm \
                 the rest within 3 s; it expires them); no tag was written"
            )
        );
    }

    #[test]
    fn received_bytes_come_from_the_range_header() {
        assert_eq!(parse_received(Some("0-1023")), 1024);
        assert_eq!(parse_received(Some("bytes=0-9")), 10);
        assert_eq!(
            parse_received(Some("0-0")),
            0,
            "distribution's empty session"
        );
        assert_eq!(parse_received(Some("garbage")), 0);
        assert_eq!(parse_received(None), 0);
    }
}
