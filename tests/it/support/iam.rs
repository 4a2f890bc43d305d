//! What IAM holds, read back as root: users and access keys.

use crate::support::broker::TestBroker;

impl TestBroker {
    /// ListUsers' names, in its order (one page: it must not be truncated).
    pub(crate) async fn user_names(&self) -> Vec<String> {
        let out = self.iam(&self.root).list_users().send().await.unwrap();
        assert!(!out.is_truncated);
        out.users.into_iter().map(|u| u.user_name).collect()
    }

    /// ListAccessKeys for `user`: `(access key id, status)` pairs, in its order.
    pub(crate) async fn access_keys(&self, user: &str) -> Vec<(String, String)> {
        self.iam(&self.root)
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .access_key_metadata
            .into_iter()
            .map(|k| {
                (
                    k.access_key_id.unwrap(),
                    k.status.unwrap().as_str().to_owned(),
                )
            })
            .collect()
    }
}
