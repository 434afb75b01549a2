//! store: the ordered, transactional key-value layer (embedded and FoundationDB backends)
//! that will hold the queue and the shared lookup cache. Not built yet.
