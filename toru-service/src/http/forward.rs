//! What a plugin sees of a client's request, and what a client sees of a
//! plugin's answer. The gateway is a proxy here (RFC 9110 §7.6.1): it drops
//! the hop-by-hop headers both ways, and never lets the admin token through.

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, request};
use toru_plugin_api::{HttpRequest, HttpResponse};

use super::respond::Body;
use crate::api::ApiError;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// The request the plugin gets: path `rest` below its route plus the query,
/// the client's end-to-end headers minus `Host` and `Authorization`.
pub(crate) fn plugin_request(parts: request::Parts, rest: &str, body: Bytes) -> HttpRequest {
    let query = parts.uri.query();
    let mut path = String::with_capacity(rest.len() + query.map_or(0, |q| q.len() + 1));
    path.push_str(rest);
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    let mut headers = end_to_end(parts.headers);
    headers.remove(HOST);
    headers.remove(AUTHORIZATION);
    HttpRequest {
        method: parts.method.as_str().to_owned(),
        path,
        headers,
        body,
    }
}

/// A plugin's answer to a forwarded request, as the client gets it. (torud's domain refuses
/// an answer with a status that is not final before it gets here; the check stays for
/// any backend.)
pub(crate) fn client_response(answer: HttpResponse) -> Result<Response<Body>, ApiError> {
    let status = StatusCode::from_u16(answer.status)
        .ok()
        // An informational status is not a final answer; 101 would hijack the connection.
        .filter(|s| !s.is_informational())
        .ok_or_else(|| {
            ApiError::BadGateway(format!(
                "the plugin answered with invalid status {}",
                answer.status
            ))
        })?;
    let mut headers = end_to_end(answer.headers);
    // hyper derives the length from the body; a wrong one from a plugin would break the framing.
    headers.remove(CONTENT_LENGTH);
    let mut response = Response::new(super::respond::full(answer.body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// A plugin's `/bundle.js` answer: JavaScript unless it says otherwise, never cached
/// (the script changes whenever the plugin is upgraded).
pub(crate) fn bundle_response(answer: HttpResponse) -> Result<Response<Body>, ApiError> {
    let mut response = client_response(answer)?;
    let headers = response.headers_mut();
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/javascript"),
        );
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `headers` without the hop-by-hop ones, including those `Connection` names.
fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    // Most messages carry none: one look at each name (the names `Connection` lists
    // matter only with a `Connection`, itself hop-by-hop) instead of a removal each.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return headers;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("close, X-One"));
        headers.append(CONNECTION, HeaderValue::from_static("x-two"));
        headers.append("x-one", HeaderValue::from_static("1"));
        headers.append("x-two", HeaderValue::from_static("2"));
        headers.append("x-three", HeaderValue::from_static("3"));
        headers.append(TE, HeaderValue::from_static("trailers"));
        let kept = end_to_end(headers);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["x-three"], "3");
    }

    #[test]
    fn invalid_statuses_are_bad_gateway() {
        for status in [0, 42, 101, 1000] {
            let result = client_response(HttpResponse::new(status));
            assert!(matches!(result, Err(ApiError::BadGateway(_))), "{status}");
        }
        assert!(client_response(HttpResponse::new(299)).is_ok());
    }
}
