//! One connection to a milter: connecting (TCP, TLS), negotiating options, and asking one
//! step at a time within the configured time limits.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ferrymail_config::model::milter::Milter;
use ferrymail_tls::TlsSettings;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::codec::{self, CHUNK_SIZE, Packet, command};
use super::error::MilterError;
use super::negotiation::{Options, step};
use super::reply::{Collected, Response};
use crate::filter::Verdict;

/// A byte stream to a milter, plain or TLS.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Transport for T {}

/// The TLS client settings, built once: loading the system's trust store is not cheap.
fn tls_settings() -> &'static TlsSettings {
    static SETTINGS: OnceLock<TlsSettings> = OnceLock::new();
    SETTINGS.get_or_init(TlsSettings::new)
}

/// Runs `work` within `limit`.
async fn within<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, MilterError>>,
) -> Result<T, MilterError> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| MilterError::Timeout(limit))?
}

/// An open, negotiated connection.
pub(crate) struct Conversation {
    stream: Box<dyn Transport>,
    config: Arc<Milter>,
    /// What the milter agreed to.
    pub(crate) options: Options,
}

impl Conversation {
    /// Connects to the milter and negotiates options, within `timeout.connect`.
    pub(crate) async fn open(config: Arc<Milter>) -> Result<Self, MilterError> {
        let limit = config.timeout_connect;
        within(limit, async {
            let tcp = TcpStream::connect((config.hostname.as_str(), config.port)).await?;
            let _ = tcp.set_nodelay(true);
            let mut stream: Box<dyn Transport> = if config.tls {
                let tls = tls_settings()
                    .handshake(tcp, &config.hostname, config.allow_invalid_certs)
                    .await?;
                Box::new(tls)
            } else {
                Box::new(tcp)
            };
            let offer = Options {
                version: config.version,
                actions: config.actions,
                protocol: config.protocol,
            };
            codec::write_packet(&mut stream, &offer.offer()).await?;
            let reply = codec::read_packet(&mut stream, config.max_response_size).await?;
            let options = offer.agree(&reply)?;
            Ok(Self {
                stream,
                config: config.clone(),
                options,
            })
        })
        .await
    }

    /// Sends `packet`, within `timeout.command`.
    pub(crate) async fn send(&mut self, packet: &Packet) -> Result<(), MilterError> {
        within(
            self.config.timeout_command,
            codec::write_packet(&mut self.stream, packet),
        )
        .await
    }

    /// Reads one reply within `limit`.
    async fn receive(&mut self, limit: Duration) -> Result<Response, MilterError> {
        let max = self.config.max_response_size;
        let packet = within(limit, codec::read_packet(&mut self.stream, max)).await?;
        Response::read(&packet, &self.options)
    }

    /// Reads the answer to a step within `limit` (renewed by each "progress"); a
    /// modification here is an error: they belong to the end of message.
    async fn answer(&mut self, limit: Duration) -> Result<Response, MilterError> {
        loop {
            match self.receive(limit).await? {
                Response::Progress => continue,
                Response::Quarantine(_) | Response::BodyChunk(_) | Response::Modification(_) => {
                    return Err(MilterError::Malformed(
                        "a modification before the end of the message".into(),
                    ));
                }
                response => return Ok(response),
            }
        }
    }

    /// Sends the macros (if any) and the command of one step, and reads its answer unless
    /// the milter asked not to answer it (`no_reply`, an `SMFIP_NR_*` bit) or to be spared
    /// it (`skip`, an `SMFIP_NO*` bit). `None` means: no answer, go on.
    pub(crate) async fn step(
        &mut self,
        macros: Option<Packet>,
        command: Packet,
        skip: u32,
        no_reply: u32,
        limit: Duration,
    ) -> Result<Option<Response>, MilterError> {
        if skip != 0 && self.options.has(skip) {
            return Ok(None);
        }
        if let Some(macros) = macros {
            self.send(&macros).await?;
        }
        self.send(&command).await?;
        if no_reply != 0 && self.options.has(no_reply) {
            return Ok(None);
        }
        self.answer(limit).await.map(Some)
    }

    /// Sends the body in chunks and reads the answer to each; stops early when the milter
    /// says "skip" or gives an answer other than continue.
    pub(crate) async fn body(&mut self, body: &[u8]) -> Result<Option<Response>, MilterError> {
        if self.options.has(step::NOBODY) {
            return Ok(None);
        }
        for chunk in body.chunks(CHUNK_SIZE) {
            let packet = Packet::new(command::BODY, chunk.to_vec());
            self.send(&packet).await?;
            if self.options.has(step::NR_BODY) {
                continue;
            }
            match self.answer(self.config.timeout_data).await? {
                Response::Continue => {}
                Response::Skip => break,
                other => return Ok(Some(other)),
            }
        }
        Ok(None)
    }

    /// Sends the end of message and collects modifications until the final answer, each
    /// reply within `timeout.data`.
    pub(crate) async fn end_of_message(
        &mut self,
        macros: Option<Packet>,
    ) -> Result<Verdict, MilterError> {
        if let Some(macros) = macros {
            self.send(&macros).await?;
        }
        self.send(&Packet::new(command::BODYEOB, Vec::new()))
            .await?;
        let mut collected = Collected::default();
        loop {
            let response = self.receive(self.config.timeout_data).await?;
            if let Some(verdict) = collected.take(response)? {
                return Ok(verdict);
            }
        }
    }
}
