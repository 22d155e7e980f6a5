//! Keeps Linux from mapping pages a guest never touched into its instance slot.
//!
//! Why. When slots keep their memory (`--keep-resident`, the default with request
//! isolation), freeing a slot walks every page mapped in it (PAGEMAP_SCAN) to find
//! the ones the instance wrote, at ~30 ns a page. A read fault in a file mapping,
//! which is what a component's memory image is, maps more than the page read:
//! Linux's fault-around also maps the neighbours already in the page cache, 16
//! pages or a whole large folio (the compiled-component cache file's folios map up
//! to 1 MiB at a time on this machine). Those pages stay mapped, and every reset
//! walks them again. A request-isolated Flask slot had 13.9 MB mapped of its
//! 21.5 MiB image, of which 50 requests touched 3.1 MB (smaps `Referenced`).
//!
//! How. Linux does no fault-around in a mapping registered with a userfaultfd for
//! write protection (mm/memory.c, `uffd_disable_fault_around`). Registered with
//! `UFFD_FEATURE_WP_ASYNC` (Linux 6.7, like PAGEMAP_SCAN) and with nothing ever
//! write-protected, the registration changes nothing else: no page is protected,
//! no fault is ever sent to us, reads and writes work as before, and the scan sees
//! the same pages as written. So the whole memory pool is registered, after each
//! instance is created: wasmtime maps an image into a slot with a fresh `mmap`
//! when the slot last held another image (or none), a fresh mapping starts
//! unregistered, and the instance has not run yet. Registering again skips the
//! mappings already registered (~1.6 us an instance).
//!
//! Measured (examples/isolation_cost, 3,000 calls on one core, four rounds each):
//! request isolation adds 212-218 -> 153-159 us to a Python hello and 330-339 ->
//! 245-265 us to Flask's hello; over HTTP (bench/run, the full runs before and
//! after) +234 -> +176 us and +381 -> +270 us.
//!
//! Where the kernel or a seccomp policy refuses userfaultfd, nothing changes.

#[cfg(target_os = "linux")]
pub use linux::FaultAround;

#[cfg(not(target_os = "linux"))]
pub use elsewhere::FaultAround;

#[cfg(target_os = "linux")]
mod linux {
    use std::ops::Range;
    use std::os::fd::OwnedFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    use anyhow::{Context, Result, bail};
    use linux_raw_sys::general::{
        _UFFDIO_API, _UFFDIO_REGISTER, UFFD_API, UFFD_FEATURE_WP_ASYNC, UFFD_USER_MODE_ONLY, UFFDIO,
        UFFDIO_REGISTER_MODE_WP, uffdio_api, uffdio_range, uffdio_register,
    };
    use rustix::ioctl::{Updater, ioctl, opcode};
    use rustix::mm::{UserfaultfdFlags, userfaultfd};

    use crate::log;

    const API: rustix::ioctl::Opcode = opcode::read_write::<uffdio_api>(UFFDIO as u8, _UFFDIO_API as u8);
    const REGISTER: rustix::ioctl::Opcode = opcode::read_write::<uffdio_register>(UFFDIO as u8, _UFFDIO_REGISTER as u8);

    /// Whether the instance slots of one engine get fault-around (the kernel's
    /// default) or not.
    pub struct FaultAround(Option<Off>);

    struct Off {
        /// Registered for asynchronous write protection; never used to protect.
        uffd: OwnedFd,
        /// The address range of the engine's linear-memory pool.
        pool: Range<usize>,
        /// Set when a registration failed, so the warning is given once.
        failed: AtomicBool,
    }

    impl FaultAround {
        /// The kernel's default: fault-around in every slot.
        pub fn kept() -> FaultAround {
            FaultAround(None)
        }

        /// Runs `create_engine` and turns fault-around off in the linear-memory
        /// pool it reserves: the largest mapping that appears meanwhile (the pool
        /// reserves address space for every slot at once, far more than anything
        /// else; `min_pool_size` is what it must at least span). Falls back to
        /// `kept` when that fails, saying why in the debug log.
        pub fn off_in_pool_of<T>(
            min_pool_size: usize,
            create_engine: impl FnOnce() -> Result<T>,
        ) -> Result<(T, FaultAround)> {
            let before = mappings().unwrap_or_default();
            let engine = create_engine()?;
            let off = mappings()
                .and_then(|after| pool(&before, &after, min_pool_size))
                .and_then(Off::new);
            match off {
                Ok(off) => Ok((engine, FaultAround(Some(off)))),
                Err(e) => {
                    tracing::debug!(target: "wsgi_wasm", "fault-around stays on in instance slots: {e:#}");
                    Ok((engine, FaultAround(None)))
                }
            }
        }

        /// After an instance is created: covers the slot mappings wasmtime made
        /// since the last call (they have not been read yet).
        pub fn cover_new_mappings(&self) {
            let Some(off) = &self.0 else { return };
            if off.failed.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = off.register() {
                off.failed.store(true, Ordering::Relaxed);
                log::warn(format!("instance slots keep fault-around from now on: {e}"));
            }
        }
    }

    impl Off {
        fn new(pool: Range<usize>) -> Result<Off> {
            // USER_MODE_ONLY lets an unprivileged process create one
            // (vm.unprivileged_userfaultfd=0). Its cost, a SIGBUS for a fault
            // the kernel itself takes where the descriptor would have to handle
            // it, never applies: with only asynchronous write protection
            // registered and nothing protected, no fault is ever handed to it.
            let flags = UserfaultfdFlags::CLOEXEC
                | UserfaultfdFlags::NONBLOCK
                | UserfaultfdFlags::from_bits_retain(UFFD_USER_MODE_ONLY);
            // SAFETY: the descriptor is only used to register the pool for
            // asynchronous write protection, which protects nothing by itself.
            let uffd = unsafe { userfaultfd(flags) }.context("userfaultfd")?;
            let mut api = uffdio_api {
                api: UFFD_API.into(),
                features: UFFD_FEATURE_WP_ASYNC.into(),
                ioctls: 0,
            };
            // SAFETY: UFFDIO_API reads and writes one uffdio_api.
            unsafe { ioctl(&uffd, Updater::<API, _>::new(&mut api)) }
                .context("userfaultfd without asynchronous write protection (Linux 6.7 or later)")?;
            let off = Off {
                uffd,
                pool,
                failed: AtomicBool::new(false),
            };
            off.register().context("registering the memory pool")?;
            Ok(off)
        }

        fn register(&self) -> rustix::io::Result<()> {
            let mut register = uffdio_register {
                range: uffdio_range {
                    start: self.pool.start as u64,
                    len: self.pool.len() as u64,
                },
                mode: UFFDIO_REGISTER_MODE_WP.into(),
                ioctls: 0,
            };
            // SAFETY: UFFDIO_REGISTER reads and writes one uffdio_register; the
            // range is the pool's own reservation, which wasmtime keeps mapped
            // for the engine's lifetime (and we hold the engine's pool range only
            // as long as the runtime that owns the engine).
            unsafe { ioctl(&self.uffd, Updater::<REGISTER, _>::new(&mut register)) }
        }
    }

    /// The address ranges mapped in this process, from /proc/self/maps.
    fn mappings() -> Result<Vec<Range<usize>>> {
        let maps = std::fs::read_to_string("/proc/self/maps").context("reading /proc/self/maps")?;
        maps.lines()
            .map(|line| {
                let range = line.split_whitespace().next().unwrap_or_default();
                let (start, end) = range.split_once('-').context("a line of /proc/self/maps")?;
                Ok(usize::from_str_radix(start, 16)?..usize::from_str_radix(end, 16)?)
            })
            .collect()
    }

    /// The largest mapping in `after` that `before` had not, if it spans at
    /// least `min_size`.
    fn pool(before: &[Range<usize>], after: &[Range<usize>], min_size: usize) -> Result<Range<usize>> {
        let largest = after
            .iter()
            .filter(|m| !before.iter().any(|b| b.start == m.start))
            .max_by_key(|m| m.len())
            .cloned();
        match largest {
            Some(pool) if pool.len() >= min_size => Ok(pool),
            Some(other) => bail!(
                "the largest new mapping ({} bytes) is smaller than a pool of slots ({min_size} bytes)",
                other.len()
            ),
            None => bail!("creating the engine mapped nothing new"),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_pool_is_the_largest_new_mapping() {
            let before = [0x1000..0x2000, 0x10_0000..0x20_0000];
            let after = [
                0x1000..0x2000,
                0x10_0000..0x20_0000,
                0x3000..0x5000,
                0x100_0000..0x900_0000,
            ];
            assert_eq!(pool(&before, &after, 0x100_0000).unwrap(), 0x100_0000..0x900_0000);
            // A mapping that was there before is not the pool, however large.
            assert!(pool(&after, &after, 0).is_err());
            // Too small to hold the slots: not the pool.
            assert!(pool(&before, &after, 0x1000_0000).is_err());
        }

        #[test]
        fn without_a_pool_to_cover_slots_keep_fault_around_and_the_engine_is_kept() {
            // No mapping this large appears: the engine is still returned.
            let (engine, fault_around) = FaultAround::off_in_pool_of(usize::MAX, || Ok("engine")).unwrap();
            assert_eq!(engine, "engine");
            assert!(fault_around.0.is_none());
            fault_around.cover_new_mappings();
            // An engine that fails to start is that error, not a fallback.
            let failed = FaultAround::off_in_pool_of(0, || -> Result<()> { bail!("no engine") });
            assert_eq!(failed.err().unwrap().to_string(), "no engine");
        }

        #[test]
        fn this_process_mappings_are_read() {
            let here = mappings().unwrap();
            let code = the_pool_is_the_largest_new_mapping as *const () as usize;
            assert!(here.iter().any(|m| m.contains(&code)), "{here:x?}");
        }

        /// What wasmtime does to a slot, on a small scale: a reserved range, a
        /// file mapped copy-on-write over part of it afterwards, then one byte
        /// read per 256 KiB. Once the range is covered again, each read maps the
        /// one page read; without that, fault-around maps its neighbours too.
        #[test]
        fn a_covered_file_mapping_maps_only_the_pages_read() {
            use std::io::Write;
            use std::os::fd::AsRawFd;
            const FILE_BYTES: usize = 8 << 20;
            const STRIDE: usize = 256 << 10;
            const PAGE_KIB: usize = 4;
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&vec![7u8; FILE_BYTES]).unwrap();
            let mapped_kib_after_reads = |cover: bool| -> usize {
                let reserved = 4 * FILE_BYTES;
                // SAFETY: a fresh reservation of our own with a file mapping
                // placed inside it, both unmapped before returning; the reads
                // stay within the file mapping.
                unsafe {
                    let base = libc::mmap(
                        std::ptr::null_mut(),
                        reserved,
                        libc::PROT_NONE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                        -1,
                        0,
                    );
                    assert_ne!(base, libc::MAP_FAILED);
                    let off = cover.then(|| Off::new(base as usize..base as usize + reserved).unwrap());
                    // One page in, as an image lies in a slot: a file mapped at a
                    // 2 MiB boundary could get whole huge pages mapped at once.
                    let image = base.byte_add(PAGE_KIB * 1024);
                    let flags = libc::MAP_PRIVATE | libc::MAP_FIXED;
                    let rw = libc::PROT_READ | libc::PROT_WRITE;
                    assert_eq!(libc::mmap(image, FILE_BYTES, rw, flags, file.as_raw_fd(), 0), image);
                    if let Some(off) = &off {
                        off.register().unwrap();
                    }
                    let bytes = std::slice::from_raw_parts(image as *const u8, FILE_BYTES);
                    let read: usize = bytes.iter().step_by(STRIDE).map(|&b| usize::from(b)).sum();
                    assert_eq!(read, 7 * FILE_BYTES / STRIDE);
                    let kib = rss_kib_of_mapping_at(image as usize);
                    libc::munmap(base, reserved);
                    kib
                }
            };
            let covered = mapped_kib_after_reads(true);
            let kept = mapped_kib_after_reads(false);
            assert_eq!(covered, FILE_BYTES / STRIDE * PAGE_KIB, "covered: one page per read");
            assert!(
                kept > covered,
                "with fault-around {kept} KiB mapped, without {covered} KiB"
            );
        }

        /// `Rss` of the mapping that starts at `start`, from /proc/self/smaps.
        fn rss_kib_of_mapping_at(start: usize) -> usize {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let header = format!("{start:x}-");
            let mut lines = smaps.lines().skip_while(|line| !line.starts_with(&header));
            let rss = lines.find_map(|line| line.strip_prefix("Rss:")).unwrap();
            rss.trim().trim_end_matches("kB").trim().parse().unwrap()
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod elsewhere {
    /// Fault-around is a Linux behaviour; elsewhere there is nothing to turn off.
    pub struct FaultAround;

    impl FaultAround {
        pub fn kept() -> FaultAround {
            FaultAround
        }

        pub fn off_in_pool_of<T>(
            _min_pool_size: usize,
            create_engine: impl FnOnce() -> anyhow::Result<T>,
        ) -> anyhow::Result<(T, FaultAround)> {
            Ok((create_engine()?, FaultAround))
        }

        pub fn cover_new_mappings(&self) {}
    }
}
