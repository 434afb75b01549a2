//! Applying a filter's header and body modifications to a received message.
