//! Error responses in the distribution spec's JSON shape:
//! `{"errors":[{"code":"...","message":"...","detail":...}]}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};

/// An error code from the spec, with the status it is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The route or method is not part of the API.
    Unsupported,
}

impl ErrorCode {
    fn name(self) -> &'static str {
        match self {
            ErrorCode::Unsupported => "UNSUPPORTED",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unsupported => StatusCode::NOT_FOUND,
        }
    }
}

/// The JSON error response for `code`.
pub fn error_response(code: ErrorCode, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        r#"{{"errors":[{{"code":"{}","message":"{}","detail":null}}]}}"#,
        code.name(),
        json_escape(message)
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_and_controls() {
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
