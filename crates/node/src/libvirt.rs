//! The node's libvirt glue: hot-plug a volume's disk into a running domain,
//! unplug it and wait until QEMU has really released it, grow an attached
//! disk so the guest sees it. Every call opens its own connection on a
//! blocking thread (libvirt's API is synchronous), so a restarted libvirtd is
//! simply reconnected to.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use limiquantix_storage::StorageError;
use limiquantix_storage::xml::{DomainDisk, disk_with_serial};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;
use virt::sys;

/// libvirt's default event loop, needed for device-removed events; it must be
/// registered before the first connection is opened, once per process.
fn ensure_event_loop() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::error!(error = %e, "cannot start libvirt's event loop; detach will poll");
            return;
        }
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| {
                loop {
                    if let Err(e) = virt::event::event_run_default_impl() {
                        tracing::warn!(error = %e, "libvirt event loop iteration failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
            .expect("spawn the libvirt event thread");
        // libvirt prints every error to stderr by default; we report them ourselves.
        virt::error::clear_error_callback();
    });
}

#[derive(Debug, Clone)]
pub struct Libvirt {
    uri: String,
    /// The longest a libvirt call may take (a hung libvirtd gives an error,
    /// not a hung node); a detach gets its own wait on top.
    call_timeout: Duration,
}

impl Libvirt {
    pub fn new(uri: &str, call_timeout: Duration) -> Self {
        ensure_event_loop();
        Self { uri: uri.to_owned(), call_timeout }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub(crate) async fn with_domain<T: Send + 'static>(
        &self,
        domain: &str,
        extra_time: Duration,
        f: impl FnOnce(&Connect, &Domain) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let name = domain.to_owned();
        self.with_conn_for(extra_time, move |conn| {
            let dom = conn.lookup_domain_by_name(&name).map_err(|e| {
                if e.code().is(ErrorNumber::NoDomain) {
                    StorageError::NotFound(format!("VM {name} does not exist on this node"))
                } else {
                    libvirt_error(&name, &e)
                }
            })?;
            if !dom.is_active().map_err(|e| libvirt_error(&name, &e))? {
                return Err(StorageError::precondition(format!("VM {name} is not running; start it before hot-plugging disks")));
            }
            f(conn, &dom)
        })
        .await
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connect) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.with_conn_for(Duration::ZERO, f).await
    }

    /// Runs `f` on a new connection on a blocking thread, within the call
    /// timeout plus `extra_time`. On timeout the caller gets UNAVAILABLE; the
    /// blocked thread finishes (or not) on its own.
    async fn with_conn_for<T: Send + 'static>(
        &self,
        extra_time: Duration,
        f: impl FnOnce(&Connect) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let uri = self.uri.clone();
        let deadline = self.call_timeout + extra_time;
        let call = tokio::task::spawn_blocking(move || {
            let conn = Connect::open(Some(&uri))
                .map_err(|e| StorageError::Unavailable(format!("cannot reach libvirt at {uri}: {}", e.message())))?;
            f(&conn)
        });
        match tokio::time::timeout(deadline, call).await {
            Ok(joined) => joined.map_err(|e| StorageError::Internal(format!("libvirt call panicked: {e}")))?,
            Err(_) => Err(StorageError::Unavailable(format!("libvirt at {} did not answer within {} s", self.uri, deadline.as_secs()))),
        }
    }

    /// Defines (or updates) a private secret and sets its value through the
    /// API: the value never appears on a command line or in a file.
    pub async fn ensure_secret(&self, secret: &limiquantix_storage::LibvirtSecret) -> Result<(), StorageError> {
        let xml = limiquantix_storage::xml::secret_xml(&secret.uuid, &secret.usage);
        let value = secret.libvirt_value()?;
        let uuid = secret.uuid.clone();
        self.with_conn(move |conn| {
            let s = conn
                .define_secret_xml(&xml, 0)
                .map_err(|e| StorageError::Internal(format!("libvirt: cannot define secret {uuid}: {}", e.message())))?;
            s.set_value(&value, 0)
                .map_err(|e| StorageError::Internal(format!("libvirt: cannot set secret {uuid}: {}", e.message())))
        })
        .await
    }

    /// Removes a secret; a missing one is fine.
    pub async fn remove_secret(&self, uuid: &str) -> Result<(), StorageError> {
        let uuid = uuid.to_owned();
        self.with_conn(move |conn| match conn.lookup_secret_by_uuid_string(&uuid) {
            Ok(s) => s.undefine().map_err(|e| StorageError::Internal(format!("libvirt: cannot remove secret {uuid}: {}", e.message()))),
            Err(e) if e.code().is(ErrorNumber::NoSecret) => Ok(()),
            Err(e) => Err(StorageError::Internal(format!("libvirt: {}", e.message()))),
        })
        .await
    }

    /// Runs `f` on the running domain `domain` (any error in libvirt's words).
    pub(crate) async fn on_domain<T: Send + 'static>(
        &self,
        domain: &str,
        f: impl FnOnce(&Domain) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.with_domain(domain, Duration::ZERO, move |_, dom| f(dom)).await
    }

    /// The domain's live XML.
    pub async fn domain_xml(&self, domain: &str) -> Result<String, StorageError> {
        let name = domain.to_owned();
        self.with_domain(domain, Duration::ZERO, move |_, dom| dom.xml_desc(0).map_err(|e| libvirt_error(&name, &e))).await
    }

    /// Hot-plugs `disk_xml`, into the persistent definition too when the domain has one.
    pub async fn attach(&self, domain: &str, disk_xml: &str) -> Result<(), StorageError> {
        let (name, xml) = (domain.to_owned(), disk_xml.to_owned());
        self.with_domain(domain, Duration::ZERO, move |_, dom| {
            let flags = affect_flags(dom, &name)?;
            dom.attach_device_flags(&xml, flags).map_err(|e| libvirt_error(&name, &e))
        })
        .await
    }

    /// Unplugs `disk` and returns once QEMU reported it removed (or it is gone
    /// from the live XML); DEADLINE_EXCEEDED-class error after `timeout`.
    pub async fn detach(&self, domain: &str, disk: DomainDisk, serial: &str, timeout: Duration) -> Result<(), StorageError> {
        let (name, serial) = (domain.to_owned(), serial.to_owned());
        self.with_domain(domain, timeout, move |conn, dom| detach_and_wait(conn, dom, &name, &disk, &serial, timeout)).await
    }

    /// Grows the disk with target `target` through QEMU (the guest sees it).
    pub async fn block_resize(&self, domain: &str, target: &str, size_bytes: u64) -> Result<(), StorageError> {
        let (name, target) = (domain.to_owned(), target.to_owned());
        self.with_domain(domain, Duration::ZERO, move |_, dom| {
            dom.block_resize(&target, size_bytes, sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES).map_err(|e| libvirt_error(&name, &e))
        })
        .await
    }
}

fn affect_flags(dom: &Domain, name: &str) -> Result<u32, StorageError> {
    let persistent = dom.is_persistent().map_err(|e| libvirt_error(name, &e))?;
    Ok(sys::VIR_DOMAIN_AFFECT_LIVE | if persistent { sys::VIR_DOMAIN_AFFECT_CONFIG } else { 0 })
}

fn libvirt_error(domain: &str, e: &virt::error::Error) -> StorageError {
    let msg = format!("libvirt, VM {domain}: {}", e.message());
    match e.code().known() {
        Some(ErrorNumber::OperationInvalid) => StorageError::FailedPrecondition(msg),
        Some(ErrorNumber::OperationTimeout | ErrorNumber::NoConnect | ErrorNumber::Rpc) => StorageError::Unavailable(msg),
        Some(ErrorNumber::InvalidArg | ErrorNumber::XmlError) => StorageError::InvalidArgument(msg),
        _ => StorageError::Internal(msg),
    }
}

/// What the device callbacks report: (removed, alias). `false` = removal failed.
type EventSender = mpsc::Sender<(bool, String)>;

unsafe extern "C" fn on_device_removed(_: sys::virConnectPtr, _: sys::virDomainPtr, alias: *const c_char, opaque: *mut c_void) {
    // SAFETY: opaque is the boxed sender registered below, alive until deregistration.
    unsafe { send_event(opaque, alias, true) }
}

unsafe extern "C" fn on_device_removal_failed(_: sys::virConnectPtr, _: sys::virDomainPtr, alias: *const c_char, opaque: *mut c_void) {
    // SAFETY: as above.
    unsafe { send_event(opaque, alias, false) }
}

unsafe fn send_event(opaque: *mut c_void, alias: *const c_char, removed: bool) {
    // SAFETY: libvirt passes our opaque pointer and a NUL-terminated alias.
    let (tx, alias) = unsafe { (&*(opaque as *const EventSender), CStr::from_ptr(alias).to_string_lossy().into_owned()) };
    let _ = tx.send((removed, alias));
}

unsafe extern "C" fn free_sender(opaque: *mut c_void) {
    // SAFETY: the box leaked in register(), freed once by libvirt.
    drop(unsafe { Box::from_raw(opaque as *mut EventSender) });
}

type DeviceCallback = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *const c_char, *mut c_void);

/// Registers a device event callback for `dom`; returns its id.
fn register(conn: &Connect, dom: &Domain, event: u32, cb: DeviceCallback, tx: EventSender) -> Option<c_int> {
    // SAFETY: libvirt calls generic callbacks with the event's real signature
    // (VIR_DOMAIN_EVENT_CALLBACK in C); the box lives until libvirt frees it.
    unsafe {
        let generic: sys::virConnectDomainEventGenericCallback =
            Some(std::mem::transmute::<DeviceCallback, unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void)>(cb));
        let opaque = Box::into_raw(Box::new(tx)) as *mut c_void;
        let id = sys::virConnectDomainEventRegisterAny(conn.as_ptr(), dom.as_ptr(), event as c_int, generic, opaque, Some(free_sender));
        if id < 0 {
            free_sender(opaque);
            None
        } else {
            Some(id)
        }
    }
}

fn detach_and_wait(
    conn: &Connect,
    dom: &Domain,
    name: &str,
    disk: &DomainDisk,
    serial: &str,
    timeout: Duration,
) -> Result<(), StorageError> {
    let (tx, rx) = mpsc::channel();
    // Registered before the detach, so the event cannot be missed.
    let ids: Vec<c_int> = [
        (sys::VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_device_removed as DeviceCallback),
        (sys::VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED, on_device_removal_failed as DeviceCallback),
    ]
    .into_iter()
    .filter_map(|(event, cb)| register(conn, dom, event, cb, tx.clone()))
    .collect();
    drop(tx);
    let result = (|| {
        let flags = affect_flags(dom, name)?;
        dom.detach_device_flags(&disk.xml, flags).map_err(|e| libvirt_error(name, &e))?;
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(250)) {
                // Only this disk's event counts; a disk without an alias is
                // followed through the live XML alone.
                Ok((removed, alias)) if disk.alias.as_deref() == Some(alias.as_str()) => {
                    return if removed {
                        Ok(())
                    } else {
                        Err(StorageError::precondition(format!(
                            "the guest in VM {name} refused to release disk {}; unmount it in the guest and retry",
                            disk.target_dev
                        )))
                    };
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            // Belt and braces: the live XML is the truth (events need the loop).
            let live = dom.xml_desc(0).map_err(|e| libvirt_error(name, &e))?;
            if disk_with_serial(&live, serial)?.is_none() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StorageError::DeadlineExceeded(format!(
                    "VM {name} did not release disk {} within {timeout:?} (the guest must acknowledge the unplug); \
                     retry, or stop the VM",
                    disk.target_dev
                )));
            }
        }
    })();
    for id in ids {
        // SAFETY: ids returned by virConnectDomainEventRegisterAny on this connection.
        unsafe { sys::virConnectDomainEventDeregisterAny(conn.as_ptr(), id) };
    }
    result
}
