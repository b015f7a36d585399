//! Requests to the REST API: the key in `X-API-Key`, problem documents
//! turned into [`ClientError`]s, lists followed through their `Link` pages.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::header::{HeaderMap, LINK};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::Value;

use super::error::{ClientError, Problem};
use super::key::{self, ApiKey};

/// How long to wait for a connection, and for a whole answer (the watch
/// stream has no such limit).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The path segments of one member of a collection, and of `rest` under
/// it: `[api, fed, projects] + alpha + [history]`.
pub fn member_path<'a>(collection: &[&'a str], id: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut path = collection.to_vec();
    path.push(id);
    path.extend_from_slice(rest);
    path
}

pub struct Api {
    base: Url,
    key: Option<ApiKey>,
    http: reqwest::Client,
}

impl Api {
    /// A client of the service at `server`. Without `key`, a server on this
    /// machine gets the quickstart's admin key when its keys file is found
    /// from the working directory up.
    pub fn new(server: &str, key: Option<ApiKey>) -> Result<Api, ClientError> {
        let base = parse_server(server)?;
        let key = key.or_else(|| {
            let local = base.host().is_some_and(|h| key::is_loopback(&h));
            let dir = std::env::current_dir().ok()?;
            let file = local.then(|| key::find_quickstart_keys(&dir)).flatten()?;
            key::quickstart_key(&std::fs::read_to_string(file).ok()?)
        });
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("federation-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot make an HTTP client: {e}")))?;
        Ok(Api { base, key, http })
    }

    /// The server as shown to the user (without any credentials in it).
    pub fn server(&self) -> String {
        let mut shown = self.base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.as_str().trim_end_matches('/').to_owned()
    }

    /// The URL of `segments` (each percent-encoded as needed) under the
    /// server's base URL.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.key {
            Some(key) => req.header("X-API-Key", key.expose()),
            None => req,
        }
    }

    /// Sends `req`; the answer when its status is a success, else the
    /// problem the server sent.
    async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let res = req.send().await.map_err(|e| self.unreachable(&e))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let body = res.bytes().await.unwrap_or_default();
        Err(ClientError::Status {
            status,
            problem: Problem::from_body(status, &body),
        })
    }

    async fn json(&self, res: Response) -> Result<Value, ClientError> {
        let body = res.bytes().await.map_err(|e| self.unreachable(&e))?;
        serde_json::from_slice(&body).map_err(|e| self.bad_answer(format!("not JSON ({e})")))
    }

    /// `GET` of `segments` with `query` (a name may repeat): the JSON answer.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        let mut url = self.url(segments);
        set_query(&mut url, query);
        let res = self
            .send(self.request(Method::GET, url).timeout(ANSWER_TIMEOUT))
            .await?;
        self.json(res).await
    }

    /// `GET` of a route that answers JSON whatever its status (`/ready`):
    /// the status and the body.
    pub async fn get_any(&self, segments: &[&str]) -> Result<(u16, Value), ClientError> {
        let res = self
            .request(Method::GET, self.url(segments))
            .timeout(ANSWER_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = res.status().as_u16();
        Ok((status, self.json(res).await?))
    }

    /// Every item of a list: a bare JSON array, continued on the page a
    /// `Link: <...>; rel="next"` header names, until there is none.
    pub async fn list(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>, ClientError> {
        let mut url = self.url(segments);
        set_query(&mut url, query);
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        loop {
            seen.insert(url.clone());
            let res = self
                .send(
                    self.request(Method::GET, url.clone())
                        .timeout(ANSWER_TIMEOUT),
                )
                .await?;
            let next = next_link(res.headers(), &url);
            match self.json(res).await? {
                Value::Array(page) => items.extend(page),
                _ => return Err(self.bad_answer("a list that is not a JSON array".into())),
            }
            let Some(next) = next else {
                return Ok(items);
            };
            // The key goes only to the server it was given for.
            if next.origin() != self.base.origin() {
                return Err(self.bad_answer(format!(
                    "the next page is on another server ({}); not followed",
                    next.origin().ascii_serialization()
                )));
            }
            if seen.contains(&next) {
                return Err(self.bad_answer("the next page is one already read".into()));
            }
            url = next;
        }
    }

    /// `POST` (or `PUT`) of a JSON body: the JSON answer.
    pub async fn send_json(
        &self,
        method: Method,
        segments: &[&str],
        body: &Value,
    ) -> Result<Value, ClientError> {
        let req = self
            .request(method, self.url(segments))
            .timeout(ANSWER_TIMEOUT)
            .json(body);
        let res = self.send(req).await?;
        self.json(res).await
    }

    /// `DELETE`; succeeds on any 2xx.
    pub async fn delete(&self, segments: &[&str]) -> Result<(), ClientError> {
        self.send(
            self.request(Method::DELETE, self.url(segments))
                .timeout(ANSWER_TIMEOUT),
        )
        .await
        .map(drop)
    }

    /// Opens a `text/event-stream`, resuming after `last_event_id` if given.
    pub async fn stream(
        &self,
        segments: &[&str],
        last_event_id: Option<&str>,
    ) -> Result<Response, ClientError> {
        let mut req = self
            .request(Method::GET, self.url(segments))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        self.send(req).await
    }

    pub fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            server: self.server(),
            cause: cause_of(e),
        }
    }

    fn bad_answer(&self, detail: String) -> ClientError {
        ClientError::BadAnswer {
            server: self.server(),
            detail,
        }
    }
}

fn parse_server(server: &str) -> Result<Url, ClientError> {
    let usage = |why: &str| ClientError::Usage(format!("--server {server:?} {why}"));
    let url = Url::parse(server.trim()).map_err(|e| usage(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host().is_none() {
        return Err(usage(
            "must be an http(s) URL such as http://127.0.0.1:8001",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(usage("must have no query or fragment"));
    }
    Ok(url)
}

fn set_query(url: &mut Url, query: &[(&str, &str)]) {
    if query.is_empty() {
        return;
    }
    let mut pairs = url.query_pairs_mut();
    for (name, value) in query {
        pairs.append_pair(name, value);
    }
}

/// Why a request got no answer, in a few words (the innermost cause:
/// "Connection refused (os error 111)"), never the URL.
fn cause_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut innermost = None;
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        innermost = Some(cause);
        next = cause.source();
    }
    match innermost {
        Some(cause) => cause.to_string(),
        None if e.is_connect() => "cannot connect".into(),
        None if e.is_body() || e.is_decode() => "the answer was cut off".into(),
        None => "the request failed".into(),
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against
/// the URL of the page that sent it.
pub fn next_link(headers: &HeaderMap, page: &Url) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(link_values)
        .find(|(_, params)| {
            params.split(';').any(|p| {
                let Some((name, value)) = p.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
        })
        .and_then(|(target, _)| page.join(target).ok())
}

/// `<target>; params` items of one header value (a target may hold commas).
fn link_values(header: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            break;
        };
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let end = after.find('<').unwrap_or(after.len());
        // The parameters run to the comma before the next target.
        let params = after[..end].trim_end().trim_end_matches(',');
        out.push((target, params));
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(LINK, v.parse().unwrap_or_else(|e| panic!("{e}")));
        }
        h
    }

    fn page() -> Url {
        Url::parse("http://h:8001/api/fed/projects?status=online").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn finds_the_next_page_among_links() {
        let h = headers(&[
            r#"</api/fed/projects?cursor=a,b&limit=2>; rel="next", </api/fed/projects?limit=2>; rel="first""#,
        ]);
        assert_eq!(
            next_link(&h, &page()).map(|u| u.to_string()),
            Some("http://h:8001/api/fed/projects?cursor=a,b&limit=2".into())
        );
        let h = headers(&[r#"<http://h:8001/x?c=1>; rel="prev""#, "<?c=2>; rel=next"]);
        assert_eq!(
            next_link(&h, &page()).map(|u| u.to_string()),
            Some("http://h:8001/api/fed/projects?c=2".into())
        );
        assert_eq!(next_link(&headers(&[r#"</a>; rel="last""#]), &page()), None);
        assert_eq!(next_link(&HeaderMap::new(), &page()), None);
    }

    #[test]
    fn paths_are_escaped_under_the_base() {
        let api = Api::new("http://h:8001/fed/", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            api.url(&["api", "fed", "projects", "a/b?c"]).as_str(),
            "http://h:8001/fed/api/fed/projects/a%2Fb%3Fc"
        );
        let api = Api::new("http://h:8001", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(api.url(&["ready"]).as_str(), "http://h:8001/ready");
    }

    #[test]
    fn refuses_servers_that_are_no_base_url() {
        for bad in ["127.0.0.1:8001", "ftp://h/", "http://h/?a=1", "not a url"] {
            assert!(
                matches!(Api::new(bad, None), Err(ClientError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_server_is_shown_without_credentials() {
        let api = Api::new("http://user:secret@h:8001/", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(api.server(), "http://h:8001");
    }
}
