//! `write-memory`'s argument (guest-sdk/wit/wsgi.wit): a range of the calling
//! guest's own linear memory, given as `tuple<u32, u32>` (address, length) and
//! copied out by the host while the call's arguments are lifted.
//!
//! Why not a `list<u8>`: a Python guest cannot pass one without cost.
//! componentize-py 0.25 copies a `bytes` object into a buffer it never frees for
//! each `list<u8>` argument, and the way around that (a latin-1 string) makes the
//! sandbox's CPython decode every body byte into text, then the host decode it
//! back: half of a 1 MiB streamed response's CPU. A `bytes` object's data already
//! lies in the guest's memory, at a fixed offset from its address, so the guest
//! names the range and the host copies it once, like WASI's `fd_write` reads a
//! guest's buffers.
//!
//! The component model gives a host function no access to the caller's memory,
//! only to lifted values; wasmtime's lifting context has it (it is how `list` and
//! `string` arguments are read), so `GuestBytes` is lifted by hand through
//! wasmtime's `ComponentType`/`Lift` traits, which `#[derive(Lift)]` implements
//! the same way. Those traits' items are hidden from wasmtime's docs and not
//! covered by its semver promise; the workspace pins wasmtime 48.0.8 (see
//! host/patches), and a build against another version that changed them fails
//! to compile here rather than misbehave.
//!
//! The memory is the one the import's canonical options name, the memory the
//! guest's own lists and strings live in. A range that does not lie inside it,
//! or is longer than one piece, is not read: the call returns an error the guest
//! sees, and nothing is sent.

use bytes::Bytes;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};

use super::imports::{MAX_WRITE_PIECE, piece_too_large};

/// The argument as the guest gives it: (address, length).
type Range = (u32, u32);

/// The bytes of a guest's range, or why they were not read.
pub struct GuestBytes(pub Result<Bytes, String>);

impl GuestBytes {
    /// Copies `length` bytes at `address` out of `memory`, at most one piece.
    fn copy((address, length): Range, memory: &[u8]) -> Self {
        let (start, length) = (address as usize, length as usize);
        if length > MAX_WRITE_PIECE {
            return Self(Err(piece_too_large()));
        }
        match start.checked_add(length).and_then(|end| memory.get(start..end)) {
            Some(bytes) => Self(Ok(Bytes::copy_from_slice(bytes))),
            None => Self(Err(format!(
                "memory range {address}+{length} is outside the guest's memory ({} bytes)",
                memory.len()
            ))),
        }
    }
}

// SAFETY: the same layout and type check as `(u32, u32)`, whose implementation
// does the work; only the lifted value differs.
unsafe impl ComponentType for GuestBytes {
    type Lower = <Range as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Range as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Range as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: lifting reads the range through `(u32, u32)`'s lift, then only reads
// the memory the lifting context hands out, within its bounds.
unsafe impl Lift for GuestBytes {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &Self::Lower) -> wasmtime::Result<Self> {
        let range = Range::linear_lift_from_flat(cx, ty, src)?;
        Ok(Self::copy(range, cx.memory()))
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        let range = Range::linear_lift_from_memory(cx, ty, bytes)?;
        Ok(Self::copy(range, cx.memory()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_a_range_inside_memory_and_refuses_any_other() {
        let memory: Vec<u8> = (0..=255).collect();
        assert_eq!(GuestBytes::copy((10, 3), &memory).0.unwrap(), &[10u8, 11, 12][..]);
        assert_eq!(GuestBytes::copy((256, 0), &memory).0.unwrap(), &[][..]);
        assert_eq!(GuestBytes::copy((250, 6), &memory).0.unwrap().len(), 6);
        for outside in [(250, 7), (257, 0), (u32::MAX, 2)] {
            let refused = GuestBytes::copy(outside, &memory).0.unwrap_err();
            assert!(
                refused.contains("outside the guest's memory (256 bytes)"),
                "{outside:?}: {refused}"
            );
        }
        let big = vec![0u8; MAX_WRITE_PIECE + 1];
        assert!(GuestBytes::copy((0, MAX_WRITE_PIECE as u32), &big).0.is_ok());
        let refused = GuestBytes::copy((0, MAX_WRITE_PIECE as u32 + 1), &big).0.unwrap_err();
        assert!(
            refused.starts_with("body piece is larger than 262144 bytes"),
            "{refused}"
        );
    }
}
