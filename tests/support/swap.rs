//! Swap for tests that need a page of a running server swapped out: a throwaway
//! swap file, and the kernel asked to page a process's memory out to it.

use std::path::PathBuf;
use std::process::Command;

use super::guest_memory::{guest_memory_images, guest_memory_kib};

/// Enough for what one test pages out of one server (the pages its guests
/// wrote: a few MiB per memory slot), small enough to create in a moment.
const SWAP_FILE_MIB: u64 = 256;

/// Swap the kernel can use while this lives: the machine's own if it has some,
/// otherwise a swap file of our own, turned off and removed on drop. Adding swap
/// needs root (CAP_SYS_ADMIN), which the CI run has.
pub struct Swap {
    file: Option<PathBuf>,
}

impl Swap {
    pub fn on() -> Swap {
        if swap_in_use() {
            return Swap { file: None };
        }
        let file = std::env::temp_dir().join(format!("wsgi-wasm-test-swap-{}", std::process::id()));
        let run = |program: &str, args: &[&str]| {
            let output = Command::new(program)
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("{program}: {e}"));
            assert!(
                output.status.success(),
                "`{program} {}` failed (adding a swap file needs root): {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let path = file.to_str().unwrap();
        run(
            "dd",
            &[
                "if=/dev/zero",
                &format!("of={path}"),
                "bs=1M",
                &format!("count={SWAP_FILE_MIB}"),
                "status=none",
            ],
        );
        run("chmod", &["600", path]);
        run("mkswap", &[path]);
        run("swapon", &[path]);
        Swap { file: Some(file) }
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = Command::new("swapoff").arg(file).status();
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Whether /proc/swaps lists any swap area (its first line is a header).
fn swap_in_use() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|swaps| swaps.lines().count() > 1)
}

/// Asks the kernel to page out the guest memory images of process `pid`
/// (`process_madvise(MADV_PAGEOUT)`, Linux 5.10+, root): the pages guests wrote
/// there go to swap. Only those mappings, so the swap file need not hold the
/// host's own memory. Returns how much of those mappings is then in swap, in KiB
/// (the `Swap:` lines of /proc/PID/smaps).
pub fn page_out_guest_memory(pid: u32) -> u64 {
    // SAFETY: plain syscalls on a pidfd we own; the iovecs describe another
    // process's address ranges, which the kernel only reads as numbers.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) as libc::c_int;
        assert!(pidfd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
        for range in guest_memory_images(pid) {
            let iov = libc::iovec {
                iov_base: range.start as *mut libc::c_void,
                iov_len: range.len(),
            };
            let paged = libc::syscall(
                libc::SYS_process_madvise,
                pidfd,
                &iov as *const libc::iovec,
                1usize,
                libc::MADV_PAGEOUT,
                0u32,
            );
            assert!(
                paged >= 0,
                "process_madvise({range:x?}): {}",
                std::io::Error::last_os_error()
            );
        }
        libc::close(pidfd);
    }
    guest_memory_kib(pid, "Swap")
}
