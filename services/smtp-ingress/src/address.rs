//! Envelope addresses as the client writes them: the local part and the domain that the
//! relay decision, the rules and SPF look at.

/// Splits `local@domain`, lower-casing the domain and dropping one trailing dot.
pub(crate) fn split_address(address: &str) -> Option<(&str, String)> {
    let (local, domain) = address.rsplit_once('@')?;
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if local.is_empty()
        || domain.is_empty()
        || domain.contains(['[', ']']) && !domain.starts_with('[')
    {
        return None;
    }
    Some((local, domain))
}
