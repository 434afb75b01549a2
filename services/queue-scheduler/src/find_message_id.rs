//! Finding queued messages by their `Message-ID` header, through its index.

use ferrymail_rpc::queue::{QueueError, QueueId};

use crate::model::message_id_index::{self, normalize};
use crate::service::Queue;
use crate::store_failure::from_store;

impl Queue {
    /// The messages indexed under `message_id`; `NotFound` when none is.
    pub(crate) async fn find_message_id(
        &self,
        message_id: &str,
    ) -> Result<Vec<QueueId>, QueueError> {
        let Some(normalized) = normalize(message_id) else {
            return Err(QueueError::InvalidArgument(format!(
                "{message_id:?} is not a Message-ID"
            )));
        };
        let keys = self.keys.clone();
        let wanted = normalized.clone();
        let ids = self
            .store
            .transact(move |tx| {
                let (keys, wanted) = (keys.clone(), wanted.clone());
                Box::pin(async move { message_id_index::find(tx, &keys, &wanted).await })
            })
            .await
            .map_err(|e| from_store("find", e))?;
        if ids.is_empty() {
            return Err(QueueError::NotFound(format!(
                "no message with Message-ID <{normalized}> in the queue"
            )));
        }
        Ok(ids.iter().map(|id| id.to_wire()).collect())
    }
}
