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

/// `address` as `local@domain` with its domain lower-cased, when it can stand in an
/// envelope as it is: no white space, control character or angle bracket, which would break
/// the command that carries it. For addresses that came from configuration or a filter, not
/// from a parsed command.
pub(crate) fn envelope_address(address: &str) -> Option<String> {
    if address.contains(|c: char| c.is_whitespace() || c.is_control() || "<>".contains(c)) {
        return None;
    }
    let (local, domain) = split_address(address)?;
    Some(format!("{local}@{domain}"))
}
