//! A small safe layer over librbd: images (closed on drop), snapshots,
//! clones, trash, a cancellable data copy and flatten with progress. Each call returns its
//! errno in a CephError naming the call.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use limiquantix_ceph_sys as sys;

use super::rados::{CephError, CephResult, IoCtx, check, cstring};

/// Features of every image we create: what QEMU and cloning need, and what
/// makes size accounting and deletion fast.
pub const FEATURES: u64 = sys::RBD_FEATURE_LAYERING
    | sys::RBD_FEATURE_EXCLUSIVE_LOCK
    | sys::RBD_FEATURE_OBJECT_MAP
    | sys::RBD_FEATURE_FAST_DIFF
    | sys::RBD_FEATURE_DEEP_FLATTEN;

/// Image creation options (features).
struct Options(sys::rbd_image_options_t);

impl Options {
    fn new(features: u64) -> CephResult<Self> {
        let mut opts: sys::rbd_image_options_t = std::ptr::null_mut();
        // SAFETY: out-pointer; destroyed on drop.
        unsafe { sys::rbd_image_options_create(&mut opts) };
        let o = Self(opts);
        // SAFETY: a valid options handle.
        check("rbd_image_options_set_uint64", unsafe {
            sys::rbd_image_options_set_uint64(o.0, sys::RBD_IMAGE_OPTION_FEATURES as c_int, features)
        })?;
        Ok(o)
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rbd_image_options_create.
        unsafe { sys::rbd_image_options_destroy(self.0) };
    }
}

/// Progress of a long librbd call; returning false (cancel) stops it.
pub struct ProgressHook<'a> {
    pub report: &'a mut dyn FnMut(u64, u64),
    pub cancel: &'a AtomicBool,
}

unsafe extern "C" fn progress_trampoline(offset: u64, total: u64, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the &mut ProgressHook passed with the call, alive for its duration.
    let hook = unsafe { &mut *(arg as *mut ProgressHook<'_>) };
    if hook.cancel.load(Ordering::Relaxed) {
        return -libc::ECANCELED;
    }
    (hook.report)(offset, total);
    0
}

pub fn create(io: &IoCtx, name: &str, size: u64) -> CephResult<()> {
    let n = cstring("rbd_create4", name)?;
    let opts = Options::new(FEATURES)?;
    // SAFETY: valid ioctx, name, options.
    check("rbd_create4", unsafe { sys::rbd_create4(io.raw(), n.as_ptr(), size, opts.0) }).map(drop)
}

pub fn clone(io: &IoCtx, parent: &str, snap: &str, child: &str) -> CephResult<()> {
    let (p, s, c) = (cstring("rbd_clone3", parent)?, cstring("rbd_clone3", snap)?, cstring("rbd_clone3", child)?);
    let opts = Options::new(FEATURES)?;
    // SAFETY: valid ioctx (parent and child in the same pool), names, options.
    check("rbd_clone3", unsafe { sys::rbd_clone3(io.raw(), p.as_ptr(), s.as_ptr(), io.raw(), c.as_ptr(), opts.0) }).map(drop)
}

/// Renames an image; EEXIST if `to` exists (never replaced).
pub fn rename(io: &IoCtx, from: &str, to: &str) -> CephResult<()> {
    let (f, t) = (cstring("rbd_rename", from)?, cstring("rbd_rename", to)?);
    // SAFETY: valid ioctx and names.
    check("rbd_rename", unsafe { sys::rbd_rename(io.raw(), f.as_ptr(), t.as_ptr()) }).map(drop)
}

pub fn remove(io: &IoCtx, name: &str) -> CephResult<()> {
    let n = cstring("rbd_remove", name)?;
    // SAFETY: valid ioctx and name.
    check("rbd_remove", unsafe { sys::rbd_remove(io.raw(), n.as_ptr()) }).map(drop)
}

/// Every image in the pool (and namespace): (id, name).
pub fn list(io: &IoCtx) -> CephResult<Vec<(String, String)>> {
    let mut specs: Vec<sys::rbd_image_spec_t> = vec![Default::default(); 64];
    loop {
        let mut n = specs.len();
        // SAFETY: a buffer of n specs; on -ERANGE n is set to the size needed.
        let rc = unsafe { sys::rbd_list2(io.raw(), specs.as_mut_ptr(), &mut n) };
        if rc == -libc::ERANGE {
            specs = vec![Default::default(); n.max(specs.len() * 2)];
            continue;
        }
        check("rbd_list2", rc)?;
        let out = specs[..n].iter().map(|s| (c_str(s.id), c_str(s.name))).collect();
        // SAFETY: frees the strings librbd put into the first n specs.
        unsafe { sys::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), n) };
        return Ok(out);
    }
}

pub fn trash_move(io: &IoCtx, name: &str) -> CephResult<()> {
    let n = cstring("rbd_trash_move", name)?;
    // SAFETY: valid ioctx and name.
    check("rbd_trash_move", unsafe { sys::rbd_trash_move(io.raw(), n.as_ptr(), 0) }).map(drop)
}

/// Images in the trash: (id, name).
pub fn trash_list(io: &IoCtx) -> CephResult<Vec<(String, String)>> {
    let mut entries: Vec<sys::rbd_trash_image_info_t> = vec![Default::default(); 64];
    loop {
        let mut n = entries.len();
        // SAFETY: a buffer of n entries; on -ERANGE n is set to the size needed.
        let rc = unsafe { sys::rbd_trash_list(io.raw(), entries.as_mut_ptr(), &mut n) };
        if rc == -libc::ERANGE {
            entries = vec![Default::default(); n.max(entries.len() * 2)];
            continue;
        }
        let count = check("rbd_trash_list", rc)? as usize;
        let out = entries[..count].iter().map(|e| (c_str(e.id), c_str(e.name))).collect();
        // SAFETY: frees the strings of the `count` entries filled in.
        unsafe { sys::rbd_trash_list_cleanup(entries.as_mut_ptr(), count) };
        return Ok(out);
    }
}

pub fn trash_remove(io: &IoCtx, id: &str) -> CephResult<()> {
    let i = cstring("rbd_trash_remove", id)?;
    // SAFETY: valid ioctx and id.
    check("rbd_trash_remove", unsafe { sys::rbd_trash_remove(io.raw(), i.as_ptr(), false) }).map(drop)
}

fn c_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librbd returns NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapInfo {
    pub id: u64,
    pub name: String,
    pub size: u64,
}

/// The parent of a clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub pool: String,
    pub image: String,
    pub snap: String,
}

/// An image that may be gone: ENOENT is None.
pub fn existing(opened: CephResult<Image>) -> CephResult<Option<Image>> {
    match opened {
        Ok(img) => Ok(Some(img)),
        Err(e) if e.errno == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// An open image, closed on drop.
pub struct Image {
    handle: sys::rbd_image_t,
}

// SAFETY: librbd image handles are thread-safe for the calls we make, and
// each Image is used by one thread at a time in this crate anyway.
unsafe impl Send for Image {}

impl Image {
    /// Opens `name` read-write; ENOENT if it does not exist.
    pub fn open(io: &IoCtx, name: &str) -> CephResult<Self> {
        let n = cstring("rbd_open", name)?;
        let mut handle: sys::rbd_image_t = std::ptr::null_mut();
        // SAFETY: valid ioctx and name; out-pointer; no snapshot.
        check("rbd_open", unsafe { sys::rbd_open(io.raw(), n.as_ptr(), &mut handle, std::ptr::null()) })?;
        Ok(Self { handle })
    }

    /// Opens `name` (at `snap`, if given) read-only: cheaper, no watch, no
    /// lock. ENOENT if it does not exist.
    pub fn open_read_only(io: &IoCtx, name: &str, snap: Option<&str>) -> CephResult<Self> {
        let n = cstring("rbd_open_read_only", name)?;
        let s = snap.map(|s| cstring("rbd_open_read_only", s)).transpose()?;
        let mut handle: sys::rbd_image_t = std::ptr::null_mut();
        // SAFETY: valid ioctx and names; out-pointer; NULL selects the head.
        check("rbd_open_read_only", unsafe {
            sys::rbd_open_read_only(io.raw(), n.as_ptr(), &mut handle, s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()))
        })?;
        Ok(Self { handle })
    }

    /// Reads from snapshot `snap` from now on (None: the image head).
    pub fn set_snap(&self, snap: Option<&str>) -> CephResult<()> {
        let s = snap.map(|s| cstring("rbd_snap_set", s)).transpose()?;
        // SAFETY: open image; NULL selects the head.
        check("rbd_snap_set", unsafe { sys::rbd_snap_set(self.handle, s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())) })
            .map(drop)
    }

    /// Whether anything was written to the head since snapshot `snap`.
    pub fn changed_since(&self, snap: &str) -> CephResult<bool> {
        unsafe extern "C" fn note(_offset: u64, _len: usize, _exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the &mut bool below, alive during the call.
            unsafe { *(arg as *mut bool) = true };
            0
        }
        let s = cstring("rbd_diff_iterate2", snap)?;
        let size = self.size()?;
        let mut changed = false;
        // SAFETY: open image at its head; callback and argument live through the call.
        check("rbd_diff_iterate2", unsafe {
            sys::rbd_diff_iterate2(self.handle, s.as_ptr(), 0, size, 0, 1, Some(note), &mut changed as *mut bool as *mut c_void)
        })?;
        Ok(changed)
    }

    /// Opens an image by id (images in the trash have no name to open by).
    pub fn open_by_id(io: &IoCtx, id: &str) -> CephResult<Self> {
        let i = cstring("rbd_open_by_id", id)?;
        let mut handle: sys::rbd_image_t = std::ptr::null_mut();
        // SAFETY: valid ioctx and id; out-pointer.
        check("rbd_open_by_id", unsafe { sys::rbd_open_by_id(io.raw(), i.as_ptr(), &mut handle, std::ptr::null()) })?;
        Ok(Self { handle })
    }

    /// The image's id (its header object is `rbd_header.<id>`).
    pub fn id(&self) -> CephResult<String> {
        let mut buf = vec![0u8; 64];
        loop {
            // SAFETY: open image, buffer of buf.len() bytes; -ERANGE if too small.
            let rc = unsafe { sys::rbd_get_id(self.handle, buf.as_mut_ptr() as *mut c_char, buf.len()) };
            if rc == -libc::ERANGE && buf.len() < 4096 {
                buf = vec![0u8; buf.len() * 4];
                continue;
            }
            check("rbd_get_id", rc)?;
            return Ok(CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default());
        }
    }

    pub fn size(&self) -> CephResult<u64> {
        let mut size = 0;
        // SAFETY: open image, out-pointer.
        check("rbd_get_size", unsafe { sys::rbd_get_size(self.handle, &mut size) })?;
        Ok(size)
    }

    /// Grows the image (shrinking is refused by librbd here).
    pub fn grow(&self, size: u64) -> CephResult<()> {
        // SAFETY: open image; no progress callback.
        check("rbd_resize2", unsafe { sys::rbd_resize2(self.handle, size, false, None, std::ptr::null_mut()) }).map(drop)
    }

    /// Bytes the image really uses (allocated objects, via the object map).
    pub fn used_bytes(&self) -> CephResult<u64> {
        unsafe extern "C" fn add(_offset: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            if exists != 0 {
                // SAFETY: `arg` is the &mut u64 below, alive during the call.
                unsafe { *(arg as *mut u64) += len as u64 };
            }
            0
        }
        let size = self.size()?;
        let mut used: u64 = 0;
        // SAFETY: open image; callback and its argument live through the call.
        check("rbd_diff_iterate2", unsafe {
            sys::rbd_diff_iterate2(self.handle, std::ptr::null(), 0, size, 0, 1, Some(add), &mut used as *mut u64 as *mut c_void)
        })?;
        Ok(used)
    }

    pub fn snapshots(&self) -> CephResult<Vec<SnapInfo>> {
        let mut snaps: Vec<sys::rbd_snap_info_t> = vec![Default::default(); 16];
        loop {
            let mut max = snaps.len() as c_int;
            // SAFETY: buffer of `max` entries; -ERANGE sets `max` to what is needed.
            let rc = unsafe { sys::rbd_snap_list(self.handle, snaps.as_mut_ptr(), &mut max) };
            if rc == -libc::ERANGE {
                snaps = vec![Default::default(); (max as usize).max(snaps.len() * 2) + 1];
                continue;
            }
            let n = check("rbd_snap_list", rc)? as usize;
            let out = snaps[..n].iter().map(|s| SnapInfo { id: s.id, name: c_str(s.name), size: s.size }).collect();
            // SAFETY: frees the names librbd allocated (list ends with a NULL name).
            unsafe { sys::rbd_snap_list_end(snaps.as_mut_ptr()) };
            return Ok(out);
        }
    }

    pub fn snap_timestamp(&self, snap_id: u64) -> CephResult<i64> {
        let mut ts = sys::timespec::default();
        // SAFETY: open image, out-pointer.
        check("rbd_snap_get_timestamp", unsafe { sys::rbd_snap_get_timestamp(self.handle, snap_id, &mut ts) })?;
        Ok(ts.tv_sec)
    }

    pub fn snap_create(&self, name: &str) -> CephResult<()> {
        let n = cstring("rbd_snap_create2", name)?;
        // SAFETY: open image, name; no progress callback.
        check("rbd_snap_create2", unsafe {
            sys::rbd_snap_create2(self.handle, n.as_ptr(), sys::RBD_SNAP_CREATE_SKIP_QUIESCE, None, std::ptr::null_mut())
        })
        .map(drop)
    }

    pub fn snap_protect(&self, name: &str) -> CephResult<()> {
        let n = cstring("rbd_snap_protect", name)?;
        // SAFETY: open image, name.
        check("rbd_snap_protect", unsafe { sys::rbd_snap_protect(self.handle, n.as_ptr()) }).map(drop)
    }

    pub fn snap_is_protected(&self, name: &str) -> CephResult<bool> {
        let n = cstring("rbd_snap_is_protected", name)?;
        let mut p: c_int = 0;
        // SAFETY: open image, name, out-pointer.
        check("rbd_snap_is_protected", unsafe { sys::rbd_snap_is_protected(self.handle, n.as_ptr(), &mut p) })?;
        Ok(p != 0)
    }

    /// Removes a snapshot, unprotecting it first if it is protected (fails
    /// with EBUSY while clones depend on it).
    pub fn snap_remove(&self, name: &str) -> CephResult<()> {
        let n = cstring("rbd_snap_remove2", name)?;
        // SAFETY: open image, name; no progress callback.
        check("rbd_snap_remove2", unsafe {
            sys::rbd_snap_remove2(self.handle, n.as_ptr(), sys::RBD_SNAP_REMOVE_UNPROTECT, None, std::ptr::null_mut())
        })
        .map(drop)
    }

    pub fn snap_rollback(&self, name: &str) -> CephResult<()> {
        let n = cstring("rbd_snap_rollback", name)?;
        // SAFETY: open image, name.
        check("rbd_snap_rollback", unsafe { sys::rbd_snap_rollback(self.handle, n.as_ptr()) }).map(drop)
    }

    /// Clones of this image as opened (open it at a snapshot): (name, in trash).
    pub fn children(&self) -> CephResult<Vec<(String, bool)>> {
        let mut specs: Vec<sys::rbd_linked_image_spec_t> = vec![Default::default(); 16];
        loop {
            let mut n = specs.len();
            // SAFETY: buffer of n specs; -ERANGE sets n to what is needed.
            let rc = unsafe { sys::rbd_list_children3(self.handle, specs.as_mut_ptr(), &mut n) };
            if rc == -libc::ERANGE {
                specs = vec![Default::default(); n.max(specs.len() * 2)];
                continue;
            }
            check("rbd_list_children3", rc)?;
            let out = specs[..n].iter().map(|s| (c_str(s.image_name), s.trash)).collect();
            // SAFETY: frees what librbd put into the first n specs.
            unsafe { sys::rbd_linked_image_spec_list_cleanup(specs.as_mut_ptr(), n) };
            return Ok(out);
        }
    }

    /// The parent of a clone, None for an independent image.
    pub fn parent(&self) -> CephResult<Option<Parent>> {
        let mut image = sys::rbd_linked_image_spec_t::default();
        let mut snap = sys::rbd_snap_spec_t::default();
        // SAFETY: out-structs, cleaned up below.
        let rc = unsafe { sys::rbd_get_parent(self.handle, &mut image, &mut snap) };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        check("rbd_get_parent", rc)?;
        let parent = Parent { pool: c_str(image.pool_name), image: c_str(image.image_name), snap: c_str(snap.name) };
        // SAFETY: filled in by rbd_get_parent.
        unsafe {
            sys::rbd_linked_image_spec_cleanup(&mut image);
            sys::rbd_snap_spec_cleanup(&mut snap);
        }
        Ok(Some(parent))
    }

    /// Clients that have the image open for writing (QEMU, a copy in
    /// progress, here or on another node). A read-only open watches nothing.
    pub fn watcher_count(&self) -> CephResult<usize> {
        let mut watchers: Vec<sys::rbd_image_watcher_t> = vec![Default::default(); 8];
        loop {
            let mut n = watchers.len();
            // SAFETY: buffer of n entries; -ERANGE sets n to what is needed.
            let rc = unsafe { sys::rbd_watchers_list(self.handle, watchers.as_mut_ptr(), &mut n) };
            if rc == -libc::ERANGE {
                watchers = vec![Default::default(); n.max(watchers.len() * 2)];
                continue;
            }
            check("rbd_watchers_list", rc)?;
            // SAFETY: frees the addresses librbd put into the first n entries.
            unsafe { sys::rbd_watchers_list_cleanup(watchers.as_mut_ptr(), n) };
            return Ok(n);
        }
    }

    /// When the image was created (unix seconds).
    pub fn created_unix_seconds(&self) -> CephResult<i64> {
        let mut ts = sys::timespec::default();
        // SAFETY: open image, out-pointer.
        check("rbd_get_create_timestamp", unsafe { sys::rbd_get_create_timestamp(self.handle, &mut ts) })?;
        Ok(ts.tv_sec)
    }

    /// The parts of the image (as opened, its parent's data included) that
    /// hold data, as (offset, length), whole objects, adjacent ones merged.
    pub fn data_extents(&self) -> CephResult<Vec<(u64, u64)>> {
        unsafe extern "C" fn add(offset: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the &mut Vec below, alive during the call.
            let extents = unsafe { &mut *(arg as *mut Vec<(u64, u64)>) };
            if exists != 0 {
                match extents.last_mut() {
                    Some((o, l)) if *o + *l == offset => *l += len as u64,
                    _ => extents.push((offset, len as u64)),
                }
            }
            0
        }
        let size = self.size()?;
        let mut extents: Vec<(u64, u64)> = Vec::new();
        // SAFETY: open image; callback and its argument live through the call.
        check("rbd_diff_iterate2", unsafe {
            sys::rbd_diff_iterate2(self.handle, std::ptr::null(), 0, size, 1, 1, Some(add), &mut extents as *mut _ as *mut c_void)
        })?;
        Ok(extents)
    }

    /// Issues one asynchronous read or write of `buf` at `offset`.
    fn aio(&self, write: bool, offset: u64, buf: &mut [u8]) -> CephResult<Completion> {
        let mut c: sys::rbd_completion_t = std::ptr::null_mut();
        // SAFETY: out-pointer; no callback (we wait on the completion).
        check("rbd_aio_create_completion", unsafe { sys::rbd_aio_create_completion(std::ptr::null_mut(), None, &mut c) })?;
        let completion = Completion(c);
        // SAFETY: open image; the caller keeps `buf` alive and untouched until
        // the completion is waited for (Completion::wait).
        let rc = unsafe {
            if write {
                sys::rbd_aio_write2(self.handle, offset, buf.len(), buf.as_ptr() as *const c_char, c, 0)
            } else {
                sys::rbd_aio_read2(self.handle, offset, buf.len(), buf.as_mut_ptr() as *mut c_char, c, 0)
            }
        };
        check(if write { "rbd_aio_write2" } else { "rbd_aio_read2" }, rc)?;
        Ok(completion)
    }

    /// Copies the data of this image (as opened, flattened: its parent's data
    /// included) into `dst`, a new image of at least the same size. Holes and
    /// all-zero blocks are skipped, so the copy stays thin. `hook` gets bytes
    /// done and total; setting its cancel flag stops the copy within one
    /// window of I/O (ECANCELED). The written data is flushed before Ok.
    pub fn copy_data_to(&self, dst: &Image, hook: &mut ProgressHook<'_>) -> CephResult<()> {
        const CHUNK: u64 = 4 << 20;
        const WINDOW: usize = 8;
        let extents = self.data_extents()?;
        let total: u64 = extents.iter().map(|(_, l)| l).sum();
        let chunks: Vec<(u64, u64)> = extents
            .iter()
            .flat_map(|&(offset, len)| (0..len.div_ceil(CHUNK)).map(move |k| (offset + k * CHUNK, (len - k * CHUNK).min(CHUNK))))
            .collect();
        let mut buffers: Vec<Vec<u8>> = vec![vec![0; CHUNK as usize]; WINDOW.min(chunks.len())];
        let mut done = 0;
        (hook.report)(done, total);
        for batch in chunks.chunks(WINDOW) {
            if hook.cancel.load(Ordering::Relaxed) {
                return Err(CephError::from_rc("copy", -libc::ECANCELED));
            }
            let bufs = &mut buffers[..batch.len()];
            run_all("rbd_aio_read2", batch, bufs, |(offset, _), buf| self.aio(false, *offset, buf))?;
            let (writes, wbufs): (Vec<(u64, u64)>, Vec<&mut Vec<u8>>) = batch
                .iter()
                .zip(bufs.iter_mut())
                .filter(|((_, len), buf)| !is_zero(&buf[..*len as usize]))
                .map(|(c, b)| (*c, b))
                .unzip();
            let mut wbufs: Vec<&mut [u8]> = wbufs.into_iter().map(|b| b.as_mut_slice()).collect();
            run_all("rbd_aio_write2", &writes, &mut wbufs, |(offset, _), buf| dst.aio(true, *offset, buf))?;
            done += batch.iter().map(|(_, l)| l).sum::<u64>();
            (hook.report)(done, total);
        }
        dst.flush()
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> CephResult<()> {
        // SAFETY: open image.
        check("rbd_flush", unsafe { sys::rbd_flush(self.handle) }).map(drop)
    }

    /// Copies the parent's data into this clone, making it independent.
    pub fn flatten(&self, hook: &mut ProgressHook<'_>) -> CephResult<()> {
        // SAFETY: open image; the hook lives through the call.
        check("rbd_flatten_with_progress", unsafe {
            sys::rbd_flatten_with_progress(self.handle, Some(progress_trampoline), hook as *mut ProgressHook<'_> as *mut c_void)
        })
        .map(drop)
    }
}

/// An issued asynchronous operation, released on drop.
struct Completion(sys::rbd_completion_t);

impl Completion {
    /// Waits for the operation; the bytes it transferred.
    fn wait(&self) -> isize {
        // SAFETY: a live completion of an issued operation.
        unsafe {
            sys::rbd_aio_wait_for_complete(self.0);
            sys::rbd_aio_get_return_value(self.0)
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // SAFETY: created by rbd_aio_create_completion, released once.
        unsafe { sys::rbd_aio_release(self.0) };
    }
}

/// Issues one operation per (chunk, buffer) and waits for all of them, also
/// when one fails to be issued or fails: a buffer is never freed or reused
/// while librbd may still write into it. A read must return its chunk's
/// length (the image ends beyond it); a write returns 0.
fn run_all<B: AsMut<[u8]>>(
    call: &'static str,
    chunks: &[(u64, u64)],
    buffers: &mut [B],
    issue: impl Fn(&(u64, u64), &mut [u8]) -> CephResult<Completion>,
) -> CephResult<()> {
    let mut issued = Vec::with_capacity(chunks.len());
    let mut first_error = None;
    for (chunk, buf) in chunks.iter().zip(buffers.iter_mut()) {
        match issue(chunk, &mut buf.as_mut()[..chunk.1 as usize]) {
            Ok(c) => issued.push((c, chunk.1)),
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    for (c, len) in issued {
        let rc = c.wait();
        let expected = if call == "rbd_aio_read2" { len as isize } else { 0 };
        if first_error.is_none() && rc != expected {
            first_error = Some(if rc < 0 {
                CephError::from_rc(call, rc as i32)
            } else {
                CephError::from_rc(call, -libc::EIO).with_detail(format!("{rc} of {len} bytes read"))
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn is_zero(buf: &[u8]) -> bool {
    // SAFETY: any bytes are valid u64s; align_to only splits off the unaligned ends.
    let (head, words, tail) = unsafe { buf.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: opened by rbd_open*, closed once.
        unsafe { sys::rbd_close(self.handle) };
    }
}

/// Whether the RBD namespace exists (`io` is on the pool, without namespace).
pub fn namespace_exists(io: &IoCtx, namespace: &str) -> CephResult<bool> {
    let n = cstring("rbd_namespace_exists", namespace)?;
    let mut exists = false;
    // SAFETY: valid ioctx and name, out-pointer.
    check("rbd_namespace_exists", unsafe { sys::rbd_namespace_exists(io.raw(), n.as_ptr(), &mut exists) })?;
    Ok(exists)
}

pub fn namespace_create(io: &IoCtx, namespace: &str) -> CephResult<()> {
    let n = cstring("rbd_namespace_create", namespace)?;
    // SAFETY: valid ioctx and name.
    check("rbd_namespace_create", unsafe { sys::rbd_namespace_create(io.raw(), n.as_ptr()) }).map(drop)
}
