//! The waiting-room page at `GET /e/{event_id}` and its two assets, compiled into the
//! binary so a deployment is still one file and needs no build step.
//!
//! The page is static: it reads the event id from its own URL and talks to the public
//! API like any other client, so nothing from the request is ever written into HTML.
//! Assets are named by a hash of their content, which lets browsers and CDNs keep them
//! for a year and still see a new version at once after a deploy.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::extract::EventPath;
use super::{ApiError, AppState};

const HTML: &str = include_str!("page/waiting-room.html");
const CSS: &str = include_str!("page/waiting-room.css");
const JS: &str = include_str!("page/waiting-room.js");

/// One embedded file, served under its content-hashed name.
#[derive(Debug)]
struct Asset {
    name: String,
    content_type: &'static str,
    body: &'static str,
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, body: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            name: format!("{stem}.{hash}.{extension}"),
            content_type,
            body,
        }
    }
}

/// The rendered page and what its responses carry.
#[derive(Debug)]
struct Page {
    html: String,
    assets: [Asset; 2],
    /// Shared by the page and its assets.
    security: Vec<(header::HeaderName, HeaderValue)>,
}

/// Keeps only origins that are safe to copy into a CSP header and an HTML attribute
/// (scheme, host, optional port; nothing that could close a directive or a quote).
fn embedder_origins(origins: &[String]) -> Vec<String> {
    origins
        .iter()
        .map(|origin| origin.trim().trim_end_matches('/'))
        .filter(|origin| {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            rest.is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
        })
        .map(str::to_owned)
        .collect()
}

impl Page {
    fn new(cors_origins: &[String], dev_login: bool) -> Self {
        let origins = embedder_origins(cors_origins);
        let css = Asset::new("waiting-room", "css", "text/css; charset=utf-8", CSS);
        let js = Asset::new("waiting-room", "js", "text/javascript; charset=utf-8", JS);
        let html = HTML
            .replace("{{css}}", &css.name)
            .replace("{{js}}", &js.name)
            .replace("{{origins}}", &origins.join(" "))
            .replace("{{dev_login}}", if dev_login { "on" } else { "off" });
        // Only the frontends that may call the API may frame the page, so a hostile
        // site cannot overlay it (clickjacking) or feed it tokens.
        let ancestors = std::iter::once("'self'")
            .chain(origins.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors {ancestors}"
        );
        let security = [
            ("content-security-policy", csp.as_str()),
            ("x-content-type-options", "nosniff"),
            // The page never needs to tell anyone where the user came from.
            ("referrer-policy", "no-referrer"),
            (
                "permissions-policy",
                "camera=(), microphone=(), geolocation=(), payment=()",
            ),
            ("cross-origin-resource-policy", "same-origin"),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                header::HeaderName::from_static(name),
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect();
        Self {
            html,
            assets: [css, js],
            security,
        }
    }

    fn respond(
        &self,
        content_type: &'static str,
        cache: &'static str,
        body: impl IntoResponse,
    ) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        for (name, value) in &self.security {
            headers.insert(name.clone(), value.clone());
        }
        (headers, body).into_response()
    }
}

/// The page's routes, configured for the frontends allowed to embed it.
pub(crate) fn router(cors_origins: &[String], dev_login: bool) -> Router<AppState> {
    Router::new()
        .route("/e/{event_id}", get(page))
        .route("/e/assets/{file}", get(asset))
        .with_state(Arc::new(Page::new(cors_origins, dev_login)))
}

/// `GET /e/{event_id}`. The event is not looked up here: the page learns whether it
/// exists from the API, which is also what tells it everything else.
async fn page(State(page): State<Arc<Page>>, EventPath(_event): EventPath) -> Response {
    // Revalidated on every load so a deploy reaches people already in line.
    page.respond("text/html; charset=utf-8", "no-cache", page.html.clone())
}

async fn asset(
    State(page): State<Arc<Page>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let asset = page
        .assets
        .iter()
        .find(|asset| asset.name == file)
        .ok_or(ApiError::NotFound)?;
    Ok(page.respond(
        asset.content_type,
        "public, max-age=31536000, immutable",
        asset.body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_origins_reach_the_policy() {
        let origins = embedder_origins(&[
            "https://shop.example".to_owned(),
            " http://localhost:3000/ ".to_owned(),
            "https://evil.example; script-src *".to_owned(),
            "https://a.example\" onload=\"x".to_owned(),
            "javascript:alert(1)".to_owned(),
            "https://".to_owned(),
        ]);
        assert_eq!(origins, ["https://shop.example", "http://localhost:3000"]);
    }

    #[test]
    fn the_page_names_its_hashed_assets_and_no_placeholder_is_left() {
        let page = Page::new(&["https://shop.example".to_owned()], true);
        for asset in &page.assets {
            assert!(page.html.contains(&format!("assets/{}", asset.name)));
        }
        assert!(!page.html.contains("{{"), "unreplaced placeholder");
        assert!(page.html.contains(r#"content="https://shop.example""#));
        assert!(
            page.html
                .contains(r#"name="dropgate-dev-login" content="on""#)
        );
        let csp = &page
            .security
            .iter()
            .find(|(name, _)| name == "content-security-policy")
            .expect("csp")
            .1;
        let csp = csp.to_str().expect("ascii");
        assert!(csp.contains("frame-ancestors 'self' https://shop.example"));
        assert!(!csp.contains("unsafe-inline"));
    }
}
