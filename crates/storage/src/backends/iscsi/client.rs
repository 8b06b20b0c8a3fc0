//! libiscsi, typed: a session to one target (login with CHAP, the password
//! from memory, never argv), SendTargets discovery, and what a pool needs to
//! know about the target's LUNs (REPORT LUNS, READ CAPACITY(16), INQUIRY with
//! the device identification page). Every call is bounded by the session's
//! timeout; calls block their thread, so callers run them off the async
//! runtime. A session is used by one thread at a time.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use limiquantix_iscsi_sys as sys;

use super::config::{Chap, IscsiName, Portal};
use crate::error::{Result, StorageError};

/// A target found by SendTargets discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    pub name: String,
    /// `host:port,tpgt` as the target announces them.
    pub portals: Vec<String>,
}

/// A logical unit as the target describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunInfo {
    pub lun: u32,
    /// SCSI peripheral device type (0 = disk).
    pub device_type: u8,
    pub size_bytes: u64,
    pub block_size: u32,
    /// The LUN's world-wide name from VPD page 0x83 (`naa.…`, `eui.…`,
    /// `t10.…`): the same whatever number the LUN has today.
    pub wwn: Option<String>,
    pub vendor: String,
    pub product: String,
}

impl LunInfo {
    pub fn is_disk(&self) -> bool {
        self.device_type == 0
    }
}

/// What a connection needs: where (portals tried in order), which target,
/// as whom.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub portals: &'a [Portal],
    pub target: &'a IscsiName,
    pub initiator: &'a IscsiName,
    pub chap: Option<&'a Chap>,
    pub timeout: Duration,
}

pub struct IscsiSession {
    ctx: NonNull<sys::iscsi_context>,
    target: String,
    portal: Portal,
    timeout: Duration,
}

// SAFETY: a libiscsi context may move between threads; it is used by one at
// a time (methods take &mut self, and the session is not Sync).
unsafe impl Send for IscsiSession {}

impl std::fmt::Debug for IscsiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IscsiSession({})", self.target)
    }
}

fn new_context(initiator: &IscsiName, timeout: Duration) -> Result<NonNull<sys::iscsi_context>> {
    let name = CString::new(initiator.as_str()).expect("checked names have no NUL");
    // SAFETY: a NUL-terminated name; a null return means out of memory.
    let ctx = NonNull::new(unsafe { sys::iscsi_create_context(name.as_ptr()) })
        .ok_or_else(|| StorageError::Internal("libiscsi could not make a context".into()))?;
    let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX).max(1);
    // SAFETY: a live context.
    unsafe { sys::iscsi_set_timeout(ctx.as_ptr(), seconds) };
    Ok(ctx)
}

fn last_error(ctx: NonNull<sys::iscsi_context>) -> String {
    // SAFETY: a live context; the string is owned by it and copied here.
    let msg = unsafe { sys::iscsi_get_error(ctx.as_ptr()) };
    if msg.is_null() { String::new() } else { unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned() }
}

/// What a failed login or command means for the caller.
/// What a failed login means; `mutual`: the node asked the target to prove
/// its own secret (a target without one refuses the whole login).
fn login_error(portal: &Portal, target: &str, detail: String, timeout: Duration, mutual: bool) -> StorageError {
    // libiscsi's words when the target's own CHAP answer is wrong or missing.
    let mutual_failed = ["Invalid CHAP_R", "Wrong CHAP targetname", "did not return CHAP_N", "Wrong size of CHAP_R"];
    if mutual_failed.iter().any(|m| detail.contains(m)) {
        StorageError::PermissionDenied(format!(
            "iSCSI target {target} at {portal} did not prove its identity (mutual CHAP): check the mutual CHAP user and secret, and that this is the array you mean ({detail})"
        ))
    } else if detail.contains("Authentication failure") || detail.contains("Authorization failure") {
        let hint = if mutual { "; with mutual CHAP, also check that the target has its own CHAP user and secret set up" } else { "" };
        StorageError::PermissionDenied(format!("iSCSI target {target} at {portal} refused the login: wrong CHAP user or secret ({detail}){hint}"))
    } else if detail.contains("Target not found") || detail.contains("Target removed") {
        StorageError::NotFound(format!("iSCSI target {target} is not at {portal}: {detail}"))
    } else {
        StorageError::Unavailable(format!(
            "iSCSI portal {portal} cannot be reached or did not answer in time ({} s): {detail}",
            timeout.as_secs()
        ))
    }
}

/// Lists the targets a portal offers (SendTargets; no CHAP).
pub fn discover(portal: &Portal, initiator: &IscsiName, timeout: Duration) -> Result<Vec<DiscoveredTarget>> {
    let ctx = new_context(initiator, timeout)?;
    let guard = ContextGuard(ctx);
    let address = CString::new(portal.address()).expect("checked portals have no NUL");
    // SAFETY: a live context and NUL-terminated strings.
    let rc = unsafe {
        sys::iscsi_set_session_type(ctx.as_ptr(), sys::ISCSI_SESSION_DISCOVERY);
        let rc = sys::iscsi_connect_sync(ctx.as_ptr(), address.as_ptr());
        if rc == 0 { sys::iscsi_login_sync(ctx.as_ptr()) } else { rc }
    };
    if rc != 0 {
        return Err(login_error(portal, "(discovery)", last_error(ctx), timeout, false));
    }
    // SAFETY: a logged-in discovery session; the list is walked, copied and freed here.
    let found = unsafe {
        let list = sys::iscsi_discovery_sync(ctx.as_ptr());
        if list.is_null() {
            return Err(login_error(portal, "(discovery)", last_error(ctx), timeout, false));
        }
        let mut found = Vec::new();
        let mut entry = list;
        while let Some(e) = entry.as_ref() {
            let mut portals = Vec::new();
            let mut p = e.portals;
            while let Some(tp) = p.as_ref() {
                portals.push(CStr::from_ptr(tp.portal).to_string_lossy().into_owned());
                p = tp.next;
            }
            found.push(DiscoveredTarget { name: CStr::from_ptr(e.target_name).to_string_lossy().into_owned(), portals });
            entry = e.next;
        }
        sys::iscsi_free_discovery_data(ctx.as_ptr(), list);
        sys::iscsi_logout_sync(ctx.as_ptr());
        found
    };
    drop(guard);
    Ok(found)
}

/// Destroys a context on every path out of a function.
struct ContextGuard(NonNull<sys::iscsi_context>);

impl Drop for ContextGuard {
    fn drop(&mut self) {
        // SAFETY: the context is owned here and used nowhere else afterwards.
        unsafe { sys::iscsi_destroy_context(self.0.as_ptr()) };
    }
}

/// A SCSI command's task, freed when dropped.
struct Task(NonNull<sys::scsi_task>);

impl Task {
    fn status(&self) -> i32 {
        // SAFETY: a live task.
        unsafe { self.0.as_ref().status }
    }

    fn sense_key(&self) -> u32 {
        // SAFETY: a live task.
        unsafe { self.0.as_ref().sense.key }
    }

    /// The command's data, decoded by libiscsi (owned by the task).
    fn unmarshall<T>(&self) -> Option<&T> {
        // SAFETY: a task whose command produced data of type T; the
        // decoded struct lives as long as the task.
        unsafe { (sys::scsi_datain_unmarshall(self.0.as_ptr()) as *const T).as_ref() }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // SAFETY: the task is owned here.
        unsafe { sys::scsi_free_scsi_task(self.0.as_ptr()) };
    }
}

impl IscsiSession {
    /// Logs in to the target (normal session), with CHAP when given, through
    /// the first portal that answers. A portal that cannot be reached is
    /// passed over; any other refusal (CHAP, no such target) is the answer.
    pub fn login(login: &Login<'_>) -> Result<Self> {
        let mut unreachable = Vec::new();
        for portal in login.portals {
            match Self::login_at(portal, login) {
                Err(StorageError::Unavailable(why)) => unreachable.push(why),
                done => return done,
            }
        }
        Err(StorageError::Unavailable(if unreachable.is_empty() {
            format!("iSCSI target {} has no portal to log in through", login.target)
        } else {
            unreachable.join("; ")
        }))
    }

    /// The portal this session went through.
    pub fn portal(&self) -> &Portal {
        &self.portal
    }

    fn login_at(portal: &Portal, login: &Login<'_>) -> Result<Self> {
        let ctx = new_context(login.initiator, login.timeout)?;
        let session = Self { ctx, target: login.target.to_string(), portal: portal.clone(), timeout: login.timeout };
        let target = CString::new(login.target.as_str()).expect("checked names have no NUL");
        let address = CString::new(portal.address()).expect("checked portals have no NUL");
        // SAFETY: a live context and NUL-terminated strings; libiscsi copies them.
        unsafe {
            sys::iscsi_set_targetname(ctx.as_ptr(), target.as_ptr());
            sys::iscsi_set_session_type(ctx.as_ptr(), sys::ISCSI_SESSION_NORMAL);
            sys::iscsi_set_header_digest(ctx.as_ptr(), sys::ISCSI_HEADER_DIGEST_NONE_CRC32C);
        }
        if let Some(chap) = login.chap {
            let user = CString::new(chap.username.as_str()).expect("checked names have no NUL");
            let secret = CString::new(chap.secret()).expect("checked secrets have no NUL");
            // SAFETY: as above.
            unsafe { sys::iscsi_set_initiator_username_pwd(ctx.as_ptr(), user.as_ptr(), secret.as_ptr()) };
            if let Some(mutual) = &chap.mutual {
                let user = CString::new(mutual.username.as_str()).expect("checked names have no NUL");
                let secret = CString::new(mutual.secret()).expect("checked secrets have no NUL");
                // SAFETY: as above; libiscsi then checks the target's CHAP_R.
                unsafe { sys::iscsi_set_target_username_pwd(ctx.as_ptr(), user.as_ptr(), secret.as_ptr()) };
            }
        }
        // SAFETY: a configured context; -1: log in without a unit-ready check.
        let rc = unsafe { sys::iscsi_full_connect_sync(ctx.as_ptr(), address.as_ptr(), -1) };
        if rc != 0 {
            let mutual = login.chap.is_some_and(|c| c.mutual.is_some());
            return Err(login_error(portal, login.target.as_str(), last_error(ctx), login.timeout, mutual));
        }
        Ok(session)
    }

    fn command(&self, what: &str, lun: Option<u32>, task: *mut sys::scsi_task) -> Result<Task> {
        let on = lun.map_or(String::new(), |l| format!(" on LUN {l}"));
        let task = NonNull::new(task).map(Task).ok_or_else(|| {
            StorageError::Unavailable(format!("iSCSI {what}{on} of {} could not be sent: {}", self.target, last_error(self.ctx)))
        })?;
        match task.status() {
            s if s == sys::SCSI_STATUS_GOOD as i32 => Ok(task),
            s if s == sys::SCSI_STATUS_TIMEOUT as i32 || s == sys::SCSI_STATUS_CANCELLED as i32 || s == sys::SCSI_STATUS_ERROR as i32 => {
                Err(StorageError::Unavailable(format!(
                    "iSCSI {what}{on} of {} failed or did not answer in time ({} s): {}",
                    self.target,
                    self.timeout.as_secs(),
                    last_error(self.ctx)
                )))
            }
            _ => Err(StorageError::Internal(format!("iSCSI {what}{on} of {} failed: {}", self.target, last_error(self.ctx)))),
        }
    }

    /// The LUN numbers the target reports.
    pub fn report_luns(&mut self) -> Result<Vec<u32>> {
        // SAFETY: a logged-in context.
        let task = self.command("REPORT LUNS", None, unsafe { sys::iscsi_reportluns_sync(self.ctx.as_ptr(), 0, 16 * 1024) })?;
        let list = task
            .unmarshall::<sys::scsi_reportluns_list>()
            .ok_or_else(|| StorageError::Internal(format!("iSCSI REPORT LUNS of {}: undecodable answer", self.target)))?;
        // SAFETY: `num` entries follow the header in the decoded list.
        let luns = unsafe { list.luns.as_slice(list.num as usize) };
        Ok(luns.iter().map(|&l| u32::from(l)).collect())
    }

    /// Clears the UNIT ATTENTION a LUN reports to the first command after a
    /// login (TEST UNIT READY until it is GOOD, a few tries).
    fn ready(&mut self, lun: u32) -> Result<()> {
        for _ in 0..3 {
            // SAFETY: a logged-in context.
            let task = unsafe { sys::iscsi_testunitready_sync(self.ctx.as_ptr(), lun as i32) };
            let Some(task) = NonNull::new(task).map(Task) else { break };
            if task.status() == sys::SCSI_STATUS_GOOD as i32 {
                return Ok(());
            }
            if !(task.status() == sys::SCSI_STATUS_CHECK_CONDITION as i32 && task.sense_key() == sys::SCSI_SENSE_UNIT_ATTENTION) {
                return Err(StorageError::NotFound(format!("LUN {lun} of {} is not ready: {}", self.target, last_error(self.ctx))));
            }
        }
        // SAFETY: as above; the last try's failure says why.
        self.command("TEST UNIT READY", Some(lun), unsafe { sys::iscsi_testunitready_sync(self.ctx.as_ptr(), lun as i32) }).map(drop)
    }

    /// Size, identity and type of one LUN. Non-disk LUNs (the target's
    /// controller) come back with size 0.
    pub fn lun_info(&mut self, lun: u32) -> Result<LunInfo> {
        let l = lun as i32;
        // SAFETY: a logged-in context; standard INQUIRY.
        let task = self.command("INQUIRY", Some(lun), unsafe { sys::iscsi_inquiry_sync(self.ctx.as_ptr(), l, 0, 0, 255) })?;
        let std_inq = task
            .unmarshall::<sys::scsi_inquiry_standard>()
            .ok_or_else(|| StorageError::Internal(format!("INQUIRY of LUN {lun}: undecodable answer")))?;
        let text = |bytes: &[std::os::raw::c_char]| {
            let b: Vec<u8> = bytes.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&b).trim().to_owned()
        };
        // Peripheral qualifier 0: a unit is there; otherwise the LUN is not (3 = no LU).
        if std_inq.qualifier != 0 {
            return Err(StorageError::NotFound(format!("iSCSI target {} has no LUN {lun}", self.target)));
        }
        let (device_type, vendor, product) = (std_inq.device_type as u8, text(&std_inq.vendor_identification), text(&std_inq.product_identification));
        drop(task);
        let wwn = self.wwn(lun)?;
        if device_type != 0 {
            return Ok(LunInfo { lun, device_type, size_bytes: 0, block_size: 0, wwn, vendor, product });
        }
        self.ready(lun)?;
        // SAFETY: a logged-in context.
        let task = self.command("READ CAPACITY(16)", Some(lun), unsafe { sys::iscsi_readcapacity16_sync(self.ctx.as_ptr(), l) })?;
        let cap = task
            .unmarshall::<sys::scsi_readcapacity16>()
            .ok_or_else(|| StorageError::Internal(format!("READ CAPACITY of LUN {lun}: undecodable answer")))?;
        let size_bytes = (cap.returned_lba + 1) * u64::from(cap.block_length);
        Ok(LunInfo { lun, device_type, size_bytes, block_size: cap.block_length, wwn, vendor, product })
    }

    /// The LUN's name from its device identification page: NAA first, then
    /// EUI-64, then the T10 vendor id, of the logical unit itself.
    fn wwn(&mut self, lun: u32) -> Result<Option<String>> {
        let page = sys::SCSI_INQUIRY_PAGECODE_DEVICE_IDENTIFICATION as i32;
        // SAFETY: a logged-in context; VPD page 0x83.
        let task = match self.command("INQUIRY (device identification)", Some(lun), unsafe {
            sys::iscsi_inquiry_sync(self.ctx.as_ptr(), lun as i32, 1, page, 255)
        }) {
            Ok(t) => t,
            Err(StorageError::Internal(_)) => return Ok(None), // the page is optional
            Err(e) => return Err(e),
        };
        let Some(id) = task.unmarshall::<sys::scsi_inquiry_device_identification>() else { return Ok(None) };
        let mut best: Option<(u8, String)> = None;
        let mut d = id.designators;
        // SAFETY: the designator list decoded with the task, walked while it lives.
        while let Some(des) = unsafe { d.as_ref() } {
            if des.association == sys::SCSI_ASSOCIATION_LOGICAL_UNIT && des.designator_length > 0 {
                let bytes = unsafe { std::slice::from_raw_parts(des.designator as *const u8, des.designator_length as usize) };
                let hex = || bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
                let named = match des.designator_type {
                    t if t == sys::SCSI_DESIGNATOR_TYPE_NAA => Some((0, format!("naa.{}", hex()))),
                    t if t == sys::SCSI_DESIGNATOR_TYPE_EUI_64 => Some((1, format!("eui.{}", hex()))),
                    t if t == sys::SCSI_DESIGNATOR_TYPE_T10_VENDORT_ID && des.code_set == sys::SCSI_CODESET_ASCII => {
                        Some((2, format!("t10.{}", String::from_utf8_lossy(bytes).split_whitespace().collect::<Vec<_>>().join("_"))))
                    }
                    _ => None,
                };
                // Among NAA names, the longest (IEEE registered extended) wins.
                if let Some((rank, name)) = named
                    && best.as_ref().is_none_or(|(r, b)| rank < *r || (rank == *r && name.len() > b.len()))
                {
                    best = Some((rank, name));
                }
            }
            d = des.next;
        }
        Ok(best.map(|(_, name)| name))
    }
}

impl Drop for IscsiSession {
    fn drop(&mut self) {
        // SAFETY: the context is ours; logout is bounded by its timeout.
        unsafe {
            sys::iscsi_logout_sync(self.ctx.as_ptr());
            sys::iscsi_destroy_context(self.ctx.as_ptr());
        }
    }
}
