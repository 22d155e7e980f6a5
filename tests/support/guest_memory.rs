//! A running server's guest memory as the kernel accounts it: the mappings that
//! hold wasm linear memories' images, read from /proc/PID/maps and smaps.

/// Whether a mapping (a line of /proc/PID/maps or smaps) holds a wasm linear
/// memory's image: wasmtime maps a module's initial memory copy-on-write from the
/// compiled component the host loaded from its cache (`.cwasm`), or from a memfd
/// of its own (`wasm-memory-image`). The pages a guest writes there are the
/// private copies the page reset must find.
fn is_guest_memory_image(maps_line: &str) -> bool {
    let mut fields = maps_line.split_whitespace();
    let perms = fields.nth(1).unwrap_or("");
    let path = fields.nth(3).unwrap_or("");
    perms == "rw-p" && (path.ends_with(".cwasm") || path.contains("wasm-memory-image"))
}

/// The address ranges of process `pid`'s guest memory images.
pub fn guest_memory_images(pid: u32) -> Vec<std::ops::Range<usize>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter(|line| is_guest_memory_image(line))
        .map(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            usize::from_str_radix(start, 16).unwrap()..usize::from_str_radix(end, 16).unwrap()
        })
        .collect()
}

/// The sum of one /proc/PID/smaps field (`Rss`, `Swap`, `Referenced`...) over
/// process `pid`'s guest memory images, in KiB.
pub fn guest_memory_kib(pid: u32, field: &str) -> u64 {
    // smaps: a mapping's header line, then its fields, one per line.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let prefix = format!("{field}:");
    let mut in_image = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(value) = line.strip_prefix(&prefix) {
            if in_image {
                kib += value.split_whitespace().next().unwrap().parse::<u64>().unwrap();
            }
        } else if line.split_whitespace().next().is_some_and(|first| first.contains('-')) {
            in_image = is_guest_memory_image(line);
        }
    }
    kib
}
