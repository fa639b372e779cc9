//! The master's own resident memory.
//!
//! warden's executable carries the whole plugin runtime and the compiler,
//! and starting up (reading the configuration, linking the plugins)
//! runs code a serving master never runs again. The kernel maps a file's
//! pages into a process as it touches them, 64 KiB around each, and
//! leaves them mapped, so that start-up code stays in the master's
//! resident set for good. [`release_code`] unmaps the pages of the
//! executable and its libraries that were never written: the master's
//! resident set is then the code it runs from then on, faulted back in
//! from the page cache, where the pages stay, as it is used. The same
//! goes for the plugins' compiled code, mapped from the plugin cache (see
//! [`crate::compiled`]): loading reads all of it, serving runs a little.
//! [`trim_heap`] gives the allocator's free memory back, as loading a
//! plugin set leaves much of it, and [`one_heap`] keeps every thread's
//! allocations in one heap, so that a reload, whose plugins are loaded on
//! another thread than the one that frees the old ones, does not leave a
//! heap behind each time.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// One mapping of `/proc/self/smaps`: where it is, whose file, whether it
/// may be written, and how many of its pages are private copies.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    length: usize,
    device: u64,
    inode: u64,
    /// The mapped file's path, as the kernel shows it; empty when
    /// anonymous.
    path: String,
    writable: bool,
    /// Kilobytes of private copies of its pages (`Anonymous:`): written,
    /// such as the relocations of a read-only-after-relocation segment.
    anonymous_kb: u64,
    /// Kilobytes of its private copies swapped out (`Swap:`), written as
    /// surely as those in memory.
    swapped_kb: u64,
}

/// Parses `/proc/self/smaps`.
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    let kilobytes = |field: &str| -> u64 {
        field
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(u64::MAX)
    };
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Anonymous:") {
            if let Some(last) = mappings.last_mut() {
                last.anonymous_kb = kilobytes(kb);
            }
            continue;
        }
        if let Some(kb) = line.strip_prefix("Swap:") {
            if let Some(last) = mappings.last_mut() {
                last.swapped_kb = kilobytes(kb);
            }
            continue;
        }
        if let Some(mapping) = header(line) {
            mappings.push(mapping);
        }
    }
    mappings
}

/// A mapping's header line of smaps: `start-end perms offset dev inode
/// path`; `None` for any other line.
fn header(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    let inode = fields.next()?.parse().ok()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    Some(Mapping {
        start,
        length: end.checked_sub(start)?,
        device: libc::makedev(major, minor),
        inode,
        path,
        writable: perms.contains('w'),
        // Unknown until its `Anonymous:` and `Swap:` lines: taken as
        // written.
        anonymous_kb: u64::MAX,
        swapped_kb: u64::MAX,
    })
}

/// Unmaps the pages of warden's executable and its shared libraries, and
/// with `compiled` of the files in that directory (the plugins' compiled
/// code), that were never written, so that only code used from now on is
/// resident; returns how many bytes of mappings were released. Each page comes back from the
/// page cache on its next use. A mapping that may be written, or holds a
/// written page (relocations) in memory or in swap, is left alone:
/// dropping it would lose what was written.
///
/// Call it from the thread that owns the loaded plugins, while no other
/// thread loads or drops one: the mappings are read first and released
/// after, and a compiled file unmapped in between could have its addresses
/// taken by memory that is then written.
pub fn release_code(compiled: Option<&Path>) -> std::io::Result<usize> {
    let executable = std::fs::metadata("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in mappings(&smaps) {
        let ours = (mapping.device == executable.dev() && mapping.inode == executable.ino())
            || is_shared_object(&mapping.path)
            || compiled.is_some_and(|dir| Path::new(&mapping.path).parent() == Some(dir));
        if !ours || mapping.writable || mapping.anonymous_kb != 0 || mapping.swapped_kb != 0 {
            continue;
        }
        let Some(address) = std::ptr::NonNull::new(mapping.start as *mut libc::c_void) else {
            continue;
        };
        // SAFETY: the range is one whole mapping of this process as smaps
        // lists it (mapped and page-aligned), a private mapping of
        // warden's executable, a shared library or a compiled plugin's
        // file, not writable and holding no private copy of a page: every
        // page in it is the file's, unchanged. None is unmapped meanwhile
        // (the executable never, a library neither, warden unloading none,
        // a plugin's file only by the thread calling this, as documented
        // above), so the range is still that mapping. For such a mapping
        // MADV_DONTNEED only unmaps the pages, and the next access maps
        // the same bytes back from the file, so code running in it and
        // references into it see nothing change.
        unsafe {
            nix::sys::mman::madvise(
                address,
                mapping.length,
                nix::sys::mman::MmapAdvise::MADV_DONTNEED,
            )
        }?;
        released += mapping.length;
    }
    Ok(released)
}

/// Whether `path` names a shared library (`libc.so.6`,
/// `ld-linux-x86-64.so.2`), present or deleted since it was mapped.
fn is_shared_object(path: &str) -> bool {
    Path::new(path.trim_end_matches(" (deleted)"))
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(".so") || name.contains(".so."))
}

/// Makes every thread allocate from the one heap (glibc's `M_ARENA_MAX`
/// of 1); returns whether the allocator took it. Call before the threads
/// start. The master's threads besides the event loop (spawners, the
/// epoch ticker, a plugin load) allocate little, so they seldom wait for
/// one another; with a heap per thread, each plugin load left one behind.
#[cfg(target_env = "gnu")]
pub fn one_heap() -> bool {
    // SAFETY: mallopt only sets a parameter of the allocator, which
    // glibc applies to heaps made from then on; no allocation moves.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
}

/// Makes every thread allocate from the one heap; nothing to do with an
/// allocator other than glibc's.
#[cfg(not(target_env = "gnu"))]
pub fn one_heap() -> bool {
    false
}

/// Gives the heap's free memory back to the system (glibc's
/// `malloc_trim`): what loading a plugin set freed stays with the process
/// otherwise. Returns whether any was given back.
#[cfg(target_env = "gnu")]
pub fn trim_heap() -> bool {
    // SAFETY: malloc_trim is thread-safe and only returns memory the
    // allocator holds free (no live allocation moves or is freed).
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Gives the heap's free memory back to the system; nothing to do with an
/// allocator other than glibc's.
#[cfg(not(target_env = "gnu"))]
pub fn trim_heap() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unwritten_mappings_of_a_file_are_candidates() {
        let smaps = "\
5573a4839000-5573a4eb2000 r--p 00000000 fe:00 10030420    /usr/sbin/warden
Rss:                3420 kB
Anonymous:             0 kB
Swap:                  0 kB
5573a6123000-5573a6128000 r--p 018e7000 fe:00 10030420    /usr/sbin/warden
Anonymous:            20 kB
Swap:                  0 kB
7f0000002000-7f0000003000 rw-p 00000000 00:00 0
Anonymous:             4 kB
Swap:                  0 kB
7f0000004000-7f0000005000 r--p 00001000 fe:00 2011     /usr/lib/libz.so.1
Anonymous:             0 kB
Swap:                  4 kB
";
        let found = mappings(smaps);
        assert_eq!(found.len(), 4);
        assert_eq!(
            found[0],
            Mapping {
                start: 0x5573_a483_9000,
                length: 0x679_000,
                device: libc::makedev(0xfe, 0),
                inode: 10_030_420,
                path: "/usr/sbin/warden".to_owned(),
                writable: false,
                anonymous_kb: 0,
                swapped_kb: 0,
            }
        );
        assert_eq!(found[1].anonymous_kb, 20, "relocated: left alone");
        assert!(found[2].writable);
        assert_eq!(
            found[3].swapped_kb, 4,
            "written, then swapped out: left alone"
        );
    }

    #[test]
    fn shared_libraries_are_known_by_their_names() {
        assert!(is_shared_object("/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(is_shared_object("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1"));
        assert!(is_shared_object("/lib/libfoo.so"));
        assert!(!is_shared_object("/usr/sbin/warden"));
        assert!(!is_shared_object("/var/cache/warden/compiled/ab-cd.cwasm"));
        assert!(!is_shared_object("/srv/notes.so.txt/x"));
        assert!(is_shared_object("/usr/lib/libfoo.so (deleted)"));
    }

    #[test]
    #[cfg(target_env = "gnu")]
    fn glibc_takes_the_one_heap_setting() {
        assert!(one_heap());
    }

    #[test]
    fn code_released_runs_on() {
        let released = release_code(None).expect("madvise");
        assert!(released > 0);
        // Code and read-only data of this binary, faulted back in.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
