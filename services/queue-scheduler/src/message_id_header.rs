//! The `Message-ID` header of a body as it arrives, for the Message-ID index: read from the
//! first [`HEADER_WINDOW`] bytes, where any header section worth indexing ends.

use bytes::Bytes;

use crate::model::message_id_index::normalize;

/// Bytes of the body searched for the header.
pub(crate) const HEADER_WINDOW: usize = 64 * 1024;

/// The normalized `Message-ID` of the body whose first chunks are `chunks`, if its header
/// section has one within [`HEADER_WINDOW`].
pub(crate) fn message_id(chunks: &[Bytes]) -> Option<String> {
    let mut head = Vec::new();
    for chunk in chunks {
        let room = HEADER_WINDOW - head.len();
        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if head.len() >= HEADER_WINDOW {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut field: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break; // The end of the header section.
        }
        if line.starts_with([' ', '\t']) {
            // A folded line continues the field before it.
            if let Some(value) = &mut field {
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some(value) = field.take() {
            return normalize(&value);
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            field = Some(value.trim().to_owned());
        }
    }
    field.and_then(|value| normalize(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str) -> Vec<Bytes> {
        text.as_bytes()
            .chunks(7)
            .map(Bytes::copy_from_slice)
            .collect()
    }

    #[test]
    fn the_header_is_found_folded_or_not_and_never_in_the_body() {
        let plain = "Received: x\r\nMessage-ID: <A1@Example.org>\r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(
            message_id(&chunks(plain)).as_deref(),
            Some("a1@example.org")
        );
        let folded = "Subject: s\r\nmessage-id:\r\n <b2@example.org>\r\n\r\nbody\r\n";
        assert_eq!(
            message_id(&chunks(folded)).as_deref(),
            Some("b2@example.org")
        );
        let last = "Subject: s\r\nMessage-Id: <c3@x>";
        assert_eq!(message_id(&chunks(last)).as_deref(), Some("c3@x"));
        let in_body = "Subject: s\r\n\r\nMessage-ID: <d4@x>\r\n";
        assert_eq!(message_id(&chunks(in_body)), None);
    }
}
