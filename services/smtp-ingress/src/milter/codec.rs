//! Packet framing of the milter protocol: a 4-byte big-endian length, a command byte and
//! its data (Sendmail's libmilter `mfdef.h`).
//!
//! Written here rather than taken from `miltr-common`/`miltr-client`: those offer only
//! protocol version 6 (version 2 milters are still deployed), decode through
//! `asynchronous-codec` into their own types without a per-packet size limit we could tie
//! to `max-response-size`, and describe the client as a test tool. The framing is a few
//! dozen lines; what must be right (limits, timeouts, no partial results) lives in our code.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::MilterError;

/// Largest body chunk sent in one `SMFIC_BODY` packet (`MILTER_CHUNK_SIZE`).
pub(crate) const CHUNK_SIZE: usize = 65535;

/// Commands the MTA sends (`SMFIC_*`).
pub(crate) mod command {
    pub(crate) const ABORT: u8 = b'A';
    pub(crate) const BODY: u8 = b'B';
    pub(crate) const CONNECT: u8 = b'C';
    pub(crate) const MACRO: u8 = b'D';
    pub(crate) const BODYEOB: u8 = b'E';
    pub(crate) const HELO: u8 = b'H';
    pub(crate) const HEADER: u8 = b'L';
    pub(crate) const MAIL: u8 = b'M';
    pub(crate) const EOH: u8 = b'N';
    pub(crate) const OPTNEG: u8 = b'O';
    pub(crate) const QUIT: u8 = b'Q';
    pub(crate) const RCPT: u8 = b'R';
    pub(crate) const DATA: u8 = b'T';
}

/// One packet: its command or reply byte and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packet {
    pub(crate) code: u8,
    pub(crate) data: Vec<u8>,
}

impl Packet {
    /// A packet of `code` with `data`.
    pub(crate) fn new(code: u8, data: Vec<u8>) -> Self {
        Self { code, data }
    }

    /// The packet as sent: length, code, data.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 5);
        // Data is at most a body chunk or a header line; the length always fits.
        let length = u32::try_from(self.data.len() + 1).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.push(self.code);
        out.extend_from_slice(&self.data);
        out
    }
}

/// Writes one packet.
pub(crate) async fn write_packet<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packet: &Packet,
) -> Result<(), MilterError> {
    writer.write_all(&packet.encode()).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one packet of at most `limit` bytes (code and data).
pub(crate) async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: u64,
) -> Result<Packet, MilterError> {
    let mut length = [0u8; 4];
    read_exact(reader, &mut length).await?;
    let size = u64::from(u32::from_be_bytes(length));
    if size == 0 {
        return Err(MilterError::Malformed("a packet of length 0".into()));
    }
    if size > limit {
        return Err(MilterError::TooLarge { size, limit });
    }
    // `size` is within `limit`, which the configuration keeps within memory's reach.
    let mut body = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
    read_exact(reader, &mut body).await?;
    let code = body.remove(0);
    Ok(Packet { code, data: body })
}

/// `read_exact`, telling a connection closed mid-packet from other network errors.
async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), MilterError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(MilterError::Closed),
        Err(e) => Err(e.into()),
    }
}

/// NUL-terminated strings one after the other, as the milter protocol writes them.
pub(crate) fn strings<S: AsRef<[u8]>>(values: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        // A NUL inside a value would end it early and shift every later field.
        out.extend(value.as_ref().iter().filter(|&&b| b != 0));
        out.push(0);
    }
    out
}

/// Splits NUL-terminated strings; the last one must be terminated.
pub(crate) fn split_strings(data: &[u8]) -> Result<Vec<String>, MilterError> {
    let Some(rest) = data.strip_suffix(&[0]) else {
        return Err(MilterError::Malformed(
            "a string without its terminating NUL".into(),
        ));
    };
    Ok(rest
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// Reads a big-endian `u32` at the start of `data`, and the rest.
pub(crate) fn take_u32(data: &[u8]) -> Result<(u32, &[u8]), MilterError> {
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return Err(MilterError::Malformed(format!(
            "{} bytes where a 32-bit number was expected",
            data.len()
        )));
    };
    Ok((u32::from_be_bytes(*head), rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn packets_round_trip_and_respect_the_limit() {
        let packet = Packet::new(b'h', strings(&["X-Spam", "yes"]));
        let bytes = packet.encode();
        assert_eq!(&bytes[..5], &[0, 0, 0, 12, b'h']);
        let read = read_packet(&mut bytes.as_slice(), 1024).await.unwrap();
        assert_eq!(read, packet);
        let too_large = read_packet(&mut bytes.as_slice(), 11).await;
        assert!(matches!(
            too_large,
            Err(MilterError::TooLarge {
                size: 12,
                limit: 11
            })
        ));
        let truncated = read_packet(&mut &bytes[..8], 1024).await;
        assert!(matches!(truncated, Err(MilterError::Closed)));
        let empty = read_packet(&mut [0u8, 0, 0, 0].as_slice(), 1024).await;
        assert!(matches!(empty, Err(MilterError::Malformed(_))));
    }

    #[test]
    fn strings_are_nul_terminated() {
        assert_eq!(strings(&["a", "b\0c"]), b"a\0bc\0");
        assert_eq!(split_strings(b"a\0b\0").unwrap(), ["a", "b"]);
        assert!(split_strings(b"a\0b").is_err());
        assert!(take_u32(&[0, 1]).is_err());
        assert_eq!(take_u32(&[0, 0, 1, 0, 7]).unwrap(), (256, &[7u8][..]));
    }
}
