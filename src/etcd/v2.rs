//! etcd's v2 HTTP keys API (`GET /v2/keys/<key>`, watches with `?wait=true&waitIndex=N`),
//! which the LAIN clusters of that era serve (etcd `--enable-v2`). Plain HTTP only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Etcd;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: only http:// endpoints are supported with the v2 API")]
    Scheme(String),
    #[error("{endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    #[error("unexpected answer {status} for {key}: {body}")]
    Status {
        status: u16,
        key: String,
        body: String,
    },
    #[error("no endpoint answered within {0:?}")]
    Timeout(Duration),
}

pub struct Client {
    /// `host:port` of each endpoint.
    endpoints: Vec<String>,
    credentials: Option<String>,
    timeout: Duration,
}

/// A key's value (`None`: absent) and the store's index at the answer.
struct Answer {
    value: Option<String>,
    index: i64,
}

impl Client {
    pub fn new(settings: &Etcd) -> Result<Client, Error> {
        let endpoints = settings
            .endpoints
            .iter()
            .map(|e| {
                e.strip_prefix("http://")
                    .map(|rest| rest.trim_end_matches('/').to_owned())
                    .ok_or_else(|| Error::Scheme(e.clone()))
            })
            .collect::<Result<_, _>>()?;
        let credentials = settings.credentials.as_ref().map(|(user, password)| {
            use base64::Engine;
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Client {
            endpoints,
            credentials,
            timeout: settings.timeout,
        })
    }

    pub async fn read(&mut self, keys: [&str; 2]) -> Result<([Option<String>; 2], i64), Error> {
        // The earlier of the two indexes: a change between the reads is seen again by
        // the wait, never missed.
        let mut values = [None, None];
        let mut index = i64::MAX;
        for (i, key) in keys.iter().enumerate() {
            let answer = self.get(key, None, Some(self.timeout)).await?;
            values[i] = answer.value;
            index = index.min(answer.index);
        }
        Ok((values, index))
    }

    /// Returns at the first change of either key after `index`, or after a minute
    /// without one (the caller then reads again: a connection that died without a
    /// word, in a partition, is never waited on for longer).
    pub async fn wait(&mut self, keys: [&str; 2], index: i64) -> Result<(), Error> {
        const POLL: Duration = Duration::from_secs(60);
        // A long poll per key; whichever answers first. etcd holds a wait open until a
        // change; the client re-reads both keys after it.
        let first = self.get(keys[0], Some(index + 1), None);
        let second = self.get(keys[1], Some(index + 1), None);
        let either = async {
            tokio::select! {
                answer = first => answer.map(|_| ()),
                answer = second => answer.map(|_| ()),
            }
        };
        tokio::time::timeout(POLL, either).await.unwrap_or(Ok(()))
    }

    async fn get(
        &self,
        key: &str,
        wait: Option<i64>,
        timeout: Option<Duration>,
    ) -> Result<Answer, Error> {
        let mut last = Error::Timeout(self.timeout);
        for endpoint in &self.endpoints {
            let attempt = self.get_from(endpoint, key, wait);
            let result = match timeout {
                Some(limit) => tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or(Err(Error::Timeout(limit))),
                None => attempt.await,
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(e @ Error::Status { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn get_from(
        &self,
        endpoint: &str,
        key: &str,
        wait: Option<i64>,
    ) -> Result<Answer, Error> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(endpoint))
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let mut uri = format!("/v2/keys{key}");
        if let Some(index) = wait {
            uri.push_str(&format!("?wait=true&waitIndex={index}"));
        }
        let mut request = Request::get(uri).header(hyper::header::HOST, endpoint);
        if let Some(credentials) = &self.credentials {
            request = request.header(hyper::header::AUTHORIZATION, credentials);
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new())?)
            .await?;
        let status = response.status().as_u16();
        let header_index = response
            .headers()
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let body = response.into_body().collect().await?.to_bytes();
        driver.abort();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match status {
            200 | 201 => {
                let node = &json["node"];
                let index = header_index
                    .or_else(|| node["modifiedIndex"].as_i64())
                    .unwrap_or(0);
                Ok(Answer {
                    value: node["value"].as_str().map(str::to_owned),
                    index,
                })
            }
            // Key not found.
            404 if json["errorCode"].as_i64() == Some(100) => Ok(Answer {
                value: None,
                index: header_index.or_else(|| json["index"].as_i64()).unwrap_or(0),
            }),
            _ => Err(Error::Status {
                status,
                key: key.to_owned(),
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }
}
