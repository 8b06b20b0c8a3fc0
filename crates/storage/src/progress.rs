//! Long copies that report progress as they go: a blocking copy on its own
//! thread, or qemu-img convert.

use std::sync::{Arc, OnceLock};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Result, StorageError, ToolError};
use crate::model::{Progress, ProgressSink};
use crate::image::InspectedImage;
use crate::tools::qemu_img::{ConvertOptions, ImportTarget, QemuImg};

const PHASE: &str = "copying";

/// Runs `copy` on a blocking thread; its `(done, total)` reports reach
/// `progress`. Dropping the future sets the flag `copy` polls to stop early.
pub(crate) async fn run_blocking<T: Send + 'static>(
    progress: ProgressSink<'_>,
    copy: impl FnOnce(&AtomicBool, &mut dyn FnMut(u64, u64)) -> Result<T> + Send + 'static,
) -> Result<T> {
    struct CancelOnDrop(Arc<AtomicBool>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    // The watch keeps only the latest report; the first one is kept apart so
    // that a copy done before this task is polled still shows its start.
    let first = Arc::new(OnceLock::new());
    let (tx, mut rx) = tokio::sync::watch::channel((0u64, 0u64));
    let first_report = first.clone();
    let mut task = tokio::task::spawn_blocking(move || {
        copy(&cancel, &mut |done, total| {
            let _ = first_report.set((done, total));
            tx.send_replace((done, total));
        })
    });
    let mut started = false;
    let mut forward = |(done, total): (u64, u64)| {
        if !started {
            started = true;
            if let Some(&(first_done, first_total)) = first.get().filter(|&&f| f != (done, total)) {
                progress(Progress { phase: PHASE, done_bytes: first_done, total_bytes: first_total });
            }
        }
        progress(Progress { phase: PHASE, done_bytes: done, total_bytes: total });
    };
    loop {
        tokio::select! {
            result = &mut task => {
                let latest = *rx.borrow();
                forward(latest);
                return result.map_err(|e| StorageError::Internal(format!("copy thread failed: {e}")))?;
            }
            Ok(()) = rx.changed() => {
                let latest = *rx.borrow_and_update();
                forward(latest);
            }
        }
    }
}

/// qemu-img convert, its progress turned into bytes of `total`.
pub(crate) async fn convert(
    qemu: &QemuImg,
    opts: &ConvertOptions<'_>,
    total: u64,
    progress: ProgressSink<'_>,
) -> std::result::Result<(), ToolError> {
    progress(Progress { phase: PHASE, done_bytes: 0, total_bytes: total });
    qemu.convert(opts, fractions_of(PHASE, total, progress)).await?;
    progress(Progress { phase: PHASE, done_bytes: total, total_bytes: total });
    Ok(())
}

/// An import by qemu-img (see [`QemuImg::import`]), its progress in bytes.
pub(crate) async fn import(
    qemu: &QemuImg,
    image: &InspectedImage,
    target: ImportTarget<'_>,
    target_format: crate::model::ImageFormat,
    progress: ProgressSink<'_>,
) -> std::result::Result<(), ToolError> {
    let total = image.virtual_size;
    progress(Progress { phase: PHASE, done_bytes: 0, total_bytes: total });
    qemu.import(image.source.as_import(), image.format, target, target_format, fractions_of(PHASE, total, progress)).await?;
    progress(Progress { phase: PHASE, done_bytes: total, total_bytes: total });
    Ok(())
}

/// Merges a linked clone's base into it (`qemu-img rebase -b ""`), its
/// progress in bytes of the volume's size.
pub(crate) async fn flatten(qemu: &QemuImg, image: &std::path::Path, total: u64, progress: ProgressSink<'_>) -> std::result::Result<(), ToolError> {
    const FLATTENING: &str = "flattening";
    progress(Progress { phase: FLATTENING, done_bytes: 0, total_bytes: total });
    qemu.rebase_flatten(image, fractions_of(FLATTENING, total, progress)).await?;
    progress(Progress { phase: FLATTENING, done_bytes: total, total_bytes: total });
    Ok(())
}

/// qemu-img's progress fractions as bytes of `total`.
fn fractions_of<'a>(phase: &'static str, total: u64, progress: ProgressSink<'a>) -> impl FnMut(f64) + 'a {
    move |fraction| progress(Progress { phase, done_bytes: (total as f64 * fraction) as u64, total_bytes: total })
}
