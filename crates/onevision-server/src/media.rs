//! Fetches the media of a parsed request: data URIs are already bytes; http(s) URLs are
//! downloaded (only when remote media are allowed, with a timeout and a size cap); `file://`
//! paths are read only from inside the allowed directory, after symlinks are resolved.
//! Decoding is not done here: the engine worker decodes, with the pixel limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use onevision_engine::{ImageInput, VideoInput};

use crate::error::ApiError;
use crate::parse::{truncate, MediaItem, MediaKind, MediaSource};

/// A remote download must finish within this time.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where media may come from.
pub struct MediaPolicy {
    /// Present only when remote media are allowed.
    pub client: Option<reqwest::Client>,
    /// The allowed directory for `file://` URLs, canonicalized; None: local files refused.
    pub local_root: Option<PathBuf>,
    /// The most bytes all media of one request may have together.
    pub max_bytes: usize,
}

type Result<T> = std::result::Result<T, ApiError>;

impl MediaPolicy {
    /// Builds the download client when remote media are allowed, and canonicalizes the
    /// allowed directory (which must exist).
    pub fn new(
        allow_remote: bool,
        local_root: Option<&Path>,
        max_bytes: usize,
    ) -> std::io::Result<Self> {
        let client = if allow_remote {
            crate::install_tls_provider();
            let client = reqwest::Client::builder()
                .timeout(REMOTE_TIMEOUT)
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("onevision-server/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(std::io::Error::other)?;
            Some(client)
        } else {
            None
        };
        let local_root = match local_root {
            None => None,
            Some(dir) => {
                let canonical = std::fs::canonicalize(dir).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("the allowed local media path {}: {e}", dir.display()),
                    )
                })?;
                if !canonical.is_dir() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "the allowed local media path {} is not a directory",
                            dir.display()
                        ),
                    ));
                }
                Some(canonical)
            }
        };
        Ok(Self {
            client,
            local_root,
            max_bytes,
        })
    }

    /// Checks every item against the policy (cheap, before anything is fetched), then
    /// fetches them in order.
    pub async fn resolve(
        &self,
        items: Vec<MediaItem>,
    ) -> Result<(Vec<ImageInput>, Vec<VideoInput>)> {
        for item in &items {
            match &item.source {
                MediaSource::Remote(url) if self.client.is_none() => {
                    return Err(ApiError::invalid(
                        &item.param,
                        format!(
                            "`{}.url` is a remote URL ({}), and this server does not fetch remote \
                             media; send the file as a base64 data URI, or start the server with \
                             --allow-remote-media",
                            item.param,
                            truncate(url.as_str(), 60)
                        ),
                    ))
                }
                MediaSource::Local(_) if self.local_root.is_none() => {
                    return Err(ApiError::invalid(
                        &item.param,
                        format!(
                            "`{}.url` is a file:// URL, and this server reads no local files; send \
                             the file as a base64 data URI, or start the server with \
                             --allowed-local-media-path DIR",
                            item.param
                        ),
                    ))
                }
                _ => {}
            }
        }
        let mut images = Vec::new();
        let mut videos = Vec::new();
        // All media of one request together get the budget a request body has, however
        // they arrive: 16 remote images must not mean 16 x the body limit in memory.
        let mut budget = self.max_bytes;
        for item in items {
            let bytes = match item.source {
                MediaSource::Inline(bytes) => bytes,
                MediaSource::Remote(url) => self.download(&url, &item.param, budget).await?,
                MediaSource::Local(path) => self.read_local(path, &item.param, budget).await?,
            };
            budget = budget.saturating_sub(bytes.len());
            match item.kind {
                MediaKind::Image => images.push(ImageInput::Bytes {
                    bytes,
                    what: item.param,
                }),
                MediaKind::Video { frames } => videos.push(VideoInput::Bytes {
                    bytes,
                    what: item.param,
                    frames,
                }),
            }
        }
        Ok((images, videos))
    }

    fn over_limit(&self, param: &str, size: u64) -> ApiError {
        ApiError::invalid(
            param,
            format!(
                "`{param}.url` is {size} bytes, over what is left of this server's limit of {} \
                 bytes for the media of one request",
                self.max_bytes
            ),
        )
    }

    async fn download(&self, url: &reqwest::Url, param: &str, max: usize) -> Result<Vec<u8>> {
        let Some(client) = &self.client else {
            return Err(ApiError::internal("remote media client missing"));
        };
        let shown = truncate(url.as_str(), 100);
        let fail = |e: reqwest::Error| {
            ApiError::invalid(
                param,
                format!("cannot fetch `{param}.url` {shown}: {}", with_causes(&e)),
            )
        };
        let mut response = client.get(url.clone()).send().await.map_err(fail)?;
        if !response.status().is_success() {
            return Err(ApiError::invalid(
                param,
                format!(
                    "cannot fetch `{param}.url` {shown}: the server answered HTTP {}",
                    response.status()
                ),
            ));
        }
        if let Some(len) = response.content_length() {
            if len > max as u64 {
                return Err(self.over_limit(param, len));
            }
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            if bytes.len() + chunk.len() > max {
                return Err(self.over_limit(param, (bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Err(ApiError::invalid(
                param,
                format!("`{param}.url` {shown} is empty"),
            ));
        }
        Ok(bytes)
    }

    async fn read_local(&self, path: PathBuf, param: &str, max: usize) -> Result<Vec<u8>> {
        let Some(root) = self.local_root.clone() else {
            return Err(ApiError::internal("allowed local media path missing"));
        };
        let max = max as u64;
        let read = tokio::task::spawn_blocking(move || read_under(&root, &path, max));
        match read.await {
            Ok(result) => result.map_err(|e| match e {
                LocalError::Outside => ApiError::forbidden(
                    param,
                    format!(
                        "`{param}.url` is outside the directory this server may read local media \
                         from (--allowed-local-media-path)"
                    ),
                ),
                LocalError::TooLarge(size) => self.over_limit(param, size),
                LocalError::Unreadable(reason) => {
                    ApiError::invalid(param, format!("cannot read `{param}.url`: {reason}"))
                }
            }),
            Err(e) => Err(ApiError::internal(format!(
                "reading a local file failed: {e}"
            ))),
        }
    }
}

/// An error and its causes, `a: b: c` (reqwest's own message alone is "error sending
/// request").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

enum LocalError {
    /// Outside the allowed directory, lexically or once symlinks are resolved.
    Outside,
    TooLarge(u64),
    Unreadable(String),
}

/// Reads `path` if it is a file inside `root` (canonical). The path is resolved first, so
/// `..` and symlinks that lead out are refused; a missing file outside `root` is reported as
/// outside, not as missing, so the answer says nothing about the rest of the file system.
fn read_under(root: &Path, path: &Path, max: u64) -> std::result::Result<Vec<u8>, LocalError> {
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) => {
            return Err(if path.starts_with(root) {
                LocalError::Unreadable(e.to_string())
            } else {
                LocalError::Outside
            })
        }
    };
    if !canonical.starts_with(root) {
        return Err(LocalError::Outside);
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| LocalError::Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(LocalError::Unreadable("not a regular file".into()));
    }
    if meta.len() > max {
        return Err(LocalError::TooLarge(meta.len()));
    }
    let bytes = std::fs::read(&canonical).map_err(|e| LocalError::Unreadable(e.to_string()))?;
    if bytes.is_empty() {
        return Err(LocalError::Unreadable("the file is empty".into()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_reads_stay_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("media");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(root.join("a.png"), b"png").expect("write");
        std::fs::write(dir.path().join("secret"), b"secret").expect("write");
        let root = std::fs::canonicalize(&root).expect("canonical");
        assert_eq!(
            read_under(&root, &root.join("a.png"), 100).ok(),
            Some(b"png".to_vec())
        );
        assert!(matches!(
            read_under(&root, &root.join("../secret"), 100),
            Err(LocalError::Outside)
        ));
        assert!(matches!(
            read_under(&root, Path::new("/nonexistent/x"), 100),
            Err(LocalError::Outside)
        ));
        assert!(matches!(
            read_under(&root, &root.join("missing.png"), 100),
            Err(LocalError::Unreadable(_))
        ));
        assert!(matches!(
            read_under(&root, &root.join("a.png"), 2),
            Err(LocalError::TooLarge(3))
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link"))
                .expect("symlink");
            assert!(matches!(
                read_under(&root, &root.join("link"), 100),
                Err(LocalError::Outside)
            ));
        }
    }
}
