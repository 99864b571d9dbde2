//! A request body as the handlers read it: piece by piece, with a pace the client must
//! keep. A body that stops, or trickles (a byte every few seconds, as slowloris
//! attacks send), would otherwise hold its connection, its upload session and its
//! place in the limits for as long as the client likes.
//!
//! The rule is Apache `mod_reqtimeout`'s default for bodies (`body=20,MinRate=500`): a
//! body has [`GRACE`], and each byte it delivers buys it 1/[`MIN_RATE`] of a second
//! more. Only time spent waiting for the client counts: while the server writes what
//! it received, or waits for the upload memory budget, the client is not to blame.
//! Whatever credit it has, a body that sends nothing for [`IDLE_TIMEOUT`] is abandoned.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::StatusCode;
use hyper::body::{Body as _, Incoming};

use crate::errors::{ApiError, ErrorCode};

/// A body that sends nothing for this long is abandoned, however much it sent before.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time a body has before its pace counts.
const GRACE: Duration = Duration::from_secs(20);
/// Bytes a second a body must average past [`GRACE`].
const MIN_RATE: u64 = 500;

/// A refused request's body is read (and dropped) for at most this long...
const READ_OUT_TIME: Duration = Duration::from_secs(2);
/// ...and at most this much of it.
const READ_OUT_BYTES: usize = 64 << 20;

/// A request's body, with what it has delivered and how long the server has waited
/// for it.
pub struct RequestBody {
    incoming: Incoming,
    received: u64,
    /// Time spent waiting for the client's bytes.
    waited: Duration,
}

/// Adds the time from its creation to the body's `waited` when dropped: when the
/// wait ends, or when the caller gives up on it (a read raced against a timer).
struct Waiting<'a> {
    since: Instant,
    waited: &'a mut Duration,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        *self.waited += self.since.elapsed();
    }
}

impl RequestBody {
    pub fn new(incoming: Incoming) -> RequestBody {
        RequestBody {
            incoming,
            received: 0,
            waited: Duration::ZERO,
        }
    }

    /// How long the client may still take for its next bytes, and whether the idle
    /// limit (rather than the pace) is what bounds it.
    fn allowance(&self) -> (Duration, bool) {
        let earned = GRACE + Duration::from_secs_f64(self.received as f64 / MIN_RATE as f64);
        let left = earned.saturating_sub(self.waited);
        if left > IDLE_TIMEOUT {
            (IDLE_TIMEOUT, true)
        } else {
            (left, false)
        }
    }

    /// The next piece of the body (`None` at its end). A body that breaks off (the
    /// client went away, bad framing), stalls, or falls behind the pace is an error of
    /// the kind `code` (what was being sent); the last two are 408.
    pub async fn next_data(&mut self, code: ErrorCode) -> Result<Option<Bytes>, ApiError> {
        loop {
            let (allowed, idle) = self.allowance();
            let waiting = Waiting {
                since: Instant::now(),
                waited: &mut self.waited,
            };
            let frame = tokio::time::timeout(allowed, self.incoming.frame()).await;
            drop(waiting);
            let frame = match frame {
                Ok(None) => return Ok(None),
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    return Err(ApiError::new(
                        code,
                        format!("reading the request body failed: {e}"),
                    ));
                }
                Err(_) => {
                    let message = if idle {
                        format!("the request body sent nothing for {IDLE_TIMEOUT:?}")
                    } else {
                        format!(
                            "the request body came slower than {MIN_RATE} bytes a second \
                             ({} bytes in {:.0?} of waiting)",
                            self.received, self.waited
                        )
                    };
                    let error = ApiError::new(code, message);
                    return Err(error.with_status(StatusCode::REQUEST_TIMEOUT));
                }
            };
            // Trailers carry nothing the API uses.
            if let Ok(data) = frame.into_data() {
                self.received += data.len() as u64;
                return Ok(Some(data));
            }
        }
    }

    /// Reads what is left of a refused request's body, within bounds; whether it was
    /// all read. A client still sending when the server closes the connection gets a
    /// reset, which can destroy the error response before the client reads it; one
    /// whose body was read reads the error. Past the bounds the connection is closed
    /// after the response.
    pub async fn read_out(&mut self) -> bool {
        if self.incoming.is_end_stream() {
            return true;
        }
        let mut left = READ_OUT_BYTES;
        let reading = async {
            while let Some(frame) = self.incoming.frame().await {
                let Ok(frame) = frame else {
                    return false;
                };
                let len = frame.data_ref().map_or(0, |data| data.len());
                let Some(rest) = left.checked_sub(len) else {
                    return false;
                };
                left = rest;
            }
            true
        };
        tokio::time::timeout(READ_OUT_TIME, reading)
            .await
            .unwrap_or(false)
    }
}
