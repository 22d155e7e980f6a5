//! Files the host sends for a guest (`wsgi.file_wrapper`): a file under a granted
//! directory (`--dir`) is streamed from the host's disk to the client, so its bytes
//! never pass through the guest's memory or its interpreter.
//!
//! The guest names the file by the path it sees; the host resolves it against the
//! same grants the guest's WASI filesystem has, through cap-std, which refuses any
//! path (`..`, an absolute symlink, a symlink pointing out) that would leave the
//! granted directory: the guest can send exactly the files it could have read.

use std::io;
use std::path::Path;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::grants::DirGrant;

/// Longest path a guest may name: PATH_MAX on Linux. A longer one names nothing.
pub const MAX_GUEST_PATH: usize = 4096;

/// The granted directories, opened once per app, as the guest sees them.
#[derive(Debug, Default)]
pub struct GrantedFiles {
    /// (guest path without a trailing slash, the directory), longest guest path first.
    dirs: Vec<(String, Dir)>,
}

impl GrantedFiles {
    pub fn open(grants: &[DirGrant]) -> io::Result<Arc<GrantedFiles>> {
        let mut dirs = Vec::with_capacity(grants.len());
        for grant in grants {
            let dir = Dir::open_ambient_dir(&grant.host, ambient_authority())
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", grant.host.display())))?;
            dirs.push((grant.guest.trim_end_matches('/').to_owned(), dir));
        }
        // A file under /data/static belongs to a /data/static grant, not to /data.
        dirs.sort_by_key(|(guest, _)| std::cmp::Reverse(guest.len()));
        Ok(Arc::new(GrantedFiles { dirs }))
    }

    /// The file at `guest_path` (an absolute path inside the sandbox), opened
    /// read-only, and its size, if it is a regular file under a granted directory.
    pub fn open_file(&self, guest_path: &str) -> Result<(std::fs::File, u64), String> {
        if guest_path.len() > MAX_GUEST_PATH {
            return Err(format!("path is longer than {MAX_GUEST_PATH} bytes"));
        }
        if !guest_path.starts_with('/') {
            return Err(format!("{guest_path}: not an absolute path"));
        }
        let (dir, relative) = self
            .dirs
            .iter()
            .find_map(|(guest, dir)| {
                let rest = guest_path.strip_prefix(guest.as_str())?;
                let rest = rest.strip_prefix('/')?;
                Some((dir, rest))
            })
            .ok_or_else(|| format!("{guest_path}: not under a granted directory (--dir)"))?;
        let file = dir
            .open(Path::new(relative))
            .map_err(|e| format!("{guest_path}: {e}"))?
            .into_std();
        let meta = file.metadata().map_err(|e| format!("{guest_path}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{guest_path}: not a regular file"));
        }
        Ok((file, meta.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn grant(host: &Path, guest: &str) -> DirGrant {
        DirGrant {
            host: host.to_owned(),
            guest: guest.to_owned(),
            writable: false,
        }
    }

    #[test]
    fn files_under_a_grant_open_and_nothing_else_does() {
        let root = tempfile::tempdir().unwrap();
        let granted = root.path().join("granted");
        std::fs::create_dir_all(granted.join("sub")).unwrap();
        std::fs::write(granted.join("sub/a.txt"), b"inside").unwrap();
        std::fs::write(root.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), granted.join("link-out")).unwrap();
        std::os::unix::fs::symlink("../secret", granted.join("relative-out")).unwrap();
        std::os::unix::fs::symlink("sub/a.txt", granted.join("link-in")).unwrap();
        let files = GrantedFiles::open(&[grant(&granted, "/data")]).unwrap();

        let mut text = String::new();
        files
            .open_file("/data/sub/a.txt")
            .unwrap()
            .0
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "inside");
        assert!(
            files.open_file("/data/link-in").is_ok(),
            "a symlink within the grant is followed"
        );

        for refused in [
            "/data/../secret",
            "/data/sub/../../secret",
            "/data/link-out",
            "/data/relative-out",
            "/database/x",
            "/data",
            "/data/sub",
            "data/sub/a.txt",
            "/other/a.txt",
        ] {
            assert!(files.open_file(refused).is_err(), "{refused} must be refused");
        }
    }

    #[test]
    fn the_most_specific_grant_wins() {
        let outer = tempfile::tempdir().unwrap();
        let inner = tempfile::tempdir().unwrap();
        std::fs::write(inner.path().join("f"), b"inner").unwrap();
        let files = GrantedFiles::open(&[grant(outer.path(), "/data"), grant(inner.path(), "/data/static/")]).unwrap();
        let mut text = String::new();
        files
            .open_file("/data/static/f")
            .unwrap()
            .0
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "inner");
    }
}
