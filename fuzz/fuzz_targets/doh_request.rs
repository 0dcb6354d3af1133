//! A DoH request's path, query, method, content type and body → the DNS
//! query it carries, or the HTTP status that refuses it, by the pure steps
//! of `listener::doh` in the order the handler takes them. Nothing may
//! panic; a GET of the body, base64url-encoded (with or without padding),
//! must carry exactly what a POST of the same body does.
//!
//! Input: a flags byte (method, content type), then the request target, a
//! newline, the content type, a newline, and the body.
#![no_main]

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{HeaderValue, Method, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use picket::listener::doh::{
    add_body_data, is_dns_message, max_age, query_from_get, query_in_head, route, DNS_MESSAGE,
    MAX_MESSAGE, MAX_TOKEN, PATH,
};

/// The statuses a request can get before the pipeline sees its query.
const STATUSES: [StatusCode; 5] = [
    StatusCode::BAD_REQUEST,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
];

/// What the handler does with a request whose head hyper accepted, up to
/// handing the query to the pipeline (every token taken as known). The body
/// arrives in pieces of `piece` bytes.
fn handle(
    method: &Method,
    uri: &Uri,
    content_type: Option<&HeaderValue>,
    body: &[u8],
    piece: usize,
) -> Result<Vec<u8>, StatusCode> {
    let token = route(uri.path()).ok_or(StatusCode::NOT_FOUND)?;
    match token {
        None => assert_eq!(uri.path(), PATH),
        Some(token) => {
            assert!(!token.is_empty() && token.len() <= MAX_TOKEN && !token.contains('/'));
            assert_eq!(uri.path(), format!("{PATH}/{token}"));
        }
    }
    match query_in_head(method, uri.query(), content_type)? {
        Some(query) => {
            assert_eq!(*method, Method::GET);
            Ok(query)
        }
        None => {
            assert_eq!(*method, Method::POST);
            assert!(is_dns_message(content_type));
            let mut message = Vec::new();
            for data in body.chunks(piece.max(1)) {
                add_body_data(&mut message, data)?;
            }
            Ok(message)
        }
    }
}

fn check(result: &Result<Vec<u8>, StatusCode>) {
    match result {
        Ok(query) => {
            assert!(query.len() <= MAX_MESSAGE);
            let _ = max_age(query);
        }
        Err(status) => assert!(STATUSES.contains(status), "unexpected status {status}"),
    }
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (target, rest) = split_line(rest);
    let (content_type, body) = split_line(rest);
    let target = String::from_utf8_lossy(target);
    let method = match flags & 3 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::PUT,
        _ => Method::HEAD,
    };
    let fuzzed_type = HeaderValue::from_bytes(content_type).ok();
    let content_type = match (flags >> 2) & 3 {
        0 => Some(HeaderValue::from_static(DNS_MESSAGE)),
        1 => Some(HeaderValue::from_static("Application/DNS-Message; q=1")),
        2 => None,
        _ => fuzzed_type,
    };
    let piece = (flags >> 4) as usize * 97 + 1;

    // The pure pieces on their own, with strings no URI parser vetted.
    let _ = route(&target);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let _ = route(path);
    if let Ok(query) = query_from_get(Some(query)) {
        // Whatever decodes re-encodes to a parameter that decodes the same.
        assert!(query.len() <= MAX_MESSAGE);
        let again = format!("dns={}", URL_SAFE_NO_PAD.encode(&query));
        assert_eq!(query_from_get(Some(&again)), Ok(query));
    }

    // The request as hyper would hand it over.
    if let Ok(uri) = target.parse::<Uri>() {
        check(&handle(&method, &uri, content_type.as_ref(), body, piece));
    }

    // GET of the body equals POST of it, on each kind of DoH path.
    let dns = Some(HeaderValue::from_static(DNS_MESSAGE));
    let post = |path: &str| {
        let uri: Uri = path.parse().unwrap();
        handle(&Method::POST, &uri, dns.as_ref(), body, piece)
    };
    // None when the target is too long for http::Uri (65534 characters),
    // which hyper refuses before the handler runs.
    let get = |path_and_query: String| match path_and_query.parse::<Uri>() {
        Ok(uri) => Some(handle(&Method::GET, &uri, None, &[], 1)),
        Err(_) => {
            assert!(
                path_and_query.len() >= u16::MAX as usize - 1,
                "base64url is a valid query"
            );
            None
        }
    };
    let plain = URL_SAFE_NO_PAD.encode(body);
    let padded = URL_SAFE.encode(body);
    let percent = padded.replace('=', "%3D");
    for path in [PATH, "/dns-query/acme-token"] {
        let posted = post(path);
        check(&posted);
        assert_eq!(
            posted.as_deref().ok(),
            (body.len() <= MAX_MESSAGE).then_some(body)
        );
        for value in [&plain, &padded, &percent] {
            for target in [
                format!("{path}?dns={value}"),
                format!("{path}?ct=1&dns={value}&x"),
            ] {
                if let Some(got) = get(target.clone()) {
                    assert_eq!(got, posted, "GET {target}");
                }
            }
        }
    }
});
