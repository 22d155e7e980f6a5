//! Which app serves a request: apps are mounted at path prefixes (the longest
//! matching prefix wins), and the prefix becomes the app's SCRIPT_NAME.

use std::sync::Arc;

use crate::environ::{ServerInfo, latin1, percent_decode};
use crate::runtime::App;

pub struct Mount {
    pub app: Arc<App>,
    /// What the app's environ says about the server; `script_name` is the prefix.
    pub info: ServerInfo,
}

pub struct Router {
    /// Longest prefix first, so the first match is the most specific.
    mounts: Vec<Mount>,
}

impl Router {
    /// Fails when two apps claim the same prefix.
    pub fn new(mut mounts: Vec<Mount>) -> Result<Router, String> {
        mounts.sort_by_key(|m| std::cmp::Reverse(m.info.script_name.len()));
        for pair in mounts.windows(2) {
            if pair[0].info.script_name == pair[1].info.script_name {
                let prefix = &pair[0].info.script_name;
                return Err(format!(
                    "two apps are mounted at {:?}",
                    if prefix.is_empty() { "/" } else { prefix }
                ));
            }
        }
        Ok(Router { mounts })
    }

    /// The app for a request path (as sent: percent-encoded). Prefixes match whole
    /// segments of the decoded path: "/shop" serves "/shop" and "/shop/cart",
    /// never "/shopping".
    pub fn route(&self, raw_path: &str) -> Option<&Mount> {
        if let [only] = self.mounts.as_slice()
            && only.info.script_name.is_empty()
        {
            return Some(only);
        }
        let path = latin1(percent_decode(raw_path.as_bytes()));
        self.mounts.iter().find(|m| {
            let prefix = m.info.script_name.as_str();
            prefix.is_empty()
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }
}
