//! Image import: every supported format converts into the pool with its data,
//! and untrusted images that reference other files or lie about their format
//! are refused before anything is written.

mod common;

use std::path::{Path, PathBuf};

use common::{Fixture, Recorder, has_pattern, qemu_img, write_pattern};
use limiquantix_storage::model::{ImageFormat, VolumeFormat, VolumeSource, VolumeSpec};
use limiquantix_storage::{StorageError, VolumeId};

const MIB: u64 = 1 << 20;

/// A raw image with recognisable data at 0 and at 5 MiB.
fn raw_image(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    qemu_img(&["create", "-q", "-f", "raw", path.to_str().unwrap(), "64M"]);
    write_pattern(&path, "raw", 0xc1, 0, MIB);
    write_pattern(&path, "raw", 0xc2, 5 * MIB, MIB);
    path
}

fn convert(from: &Path, to: &Path, format: &str, options: &[&str]) {
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", format];
    for o in options {
        args.extend(["-o", o]);
    }
    args.extend([from.to_str().unwrap(), to.to_str().unwrap()]);
    qemu_img(&args);
}

async fn import(f: &Fixture, path: &Path, format: ImageFormat) -> Result<limiquantix_storage::model::VolumeInfo, StorageError> {
    let source = VolumeSource::Image { path: path.to_owned(), format };
    f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &|_| {}).await
}

#[tokio::test]
async fn every_supported_format_imports_with_its_data() {
    let f = Fixture::new().await;
    let raw = raw_image(&f.images_dir(), "disk.img");
    let cases = [
        ("disk.qcow2", ImageFormat::Qcow2, "qcow2", vec![]),
        ("disk.vmdk", ImageFormat::Vmdk, "vmdk", vec![]),
        ("disk-stream.vmdk", ImageFormat::Vmdk, "vmdk", vec!["subformat=streamOptimized"]),
        ("disk.vhdx", ImageFormat::Vhdx, "vhdx", vec![]),
        ("disk.vdi", ImageFormat::Vdi, "vdi", vec![]),
    ];
    let mut images = vec![(raw.clone(), ImageFormat::Raw)];
    for (name, format, driver, opts) in &cases {
        let path = f.images_dir().join(name);
        convert(&raw, &path, driver, opts);
        images.push((path, *format));
    }
    for (path, format) in images {
        let rec = Recorder::default();
        let sink = rec.sink();
        let source = VolumeSource::Image { path: path.clone(), format };
        let v = f.manager.create_volume(f.pool, VolumeId::new_random(), VolumeSpec::default(), source, &sink).await
            .unwrap_or_else(|e| panic!("{format} import failed: {e}"));
        assert_eq!(v.format, VolumeFormat::Qcow2, "imports default to qcow2");
        assert_eq!(v.size_bytes, 64 * MIB, "{format}");
        assert!(has_pattern(&f.path_of(&v), "qcow2", 0xc1, 0, MIB), "{format}");
        assert!(has_pattern(&f.path_of(&v), "qcow2", 0xc2, 5 * MIB, MIB), "{format}");
        let events = rec.events();
        assert_eq!(events.first().unwrap().phase, "inspecting", "{events:?}");
        assert_eq!(events.last().unwrap().done_bytes, 64 * MIB, "{events:?}");
        assert!(path.exists(), "the source image is left in place");
    }
}

#[tokio::test]
async fn import_can_grow_and_pick_raw() {
    let f = Fixture::new().await;
    let raw = raw_image(&f.images_dir(), "disk.img");
    let spec = VolumeSpec { size_bytes: Some(128 * MIB), format: Some(VolumeFormat::Raw), ..Default::default() };
    let source = VolumeSource::Image { path: raw, format: ImageFormat::Raw };
    let v = f.manager.create_volume(f.pool, VolumeId::new_random(), spec, source, &|_| {}).await.unwrap();
    assert_eq!((v.format, v.size_bytes), (VolumeFormat::Raw, 128 * MIB));
    assert!(has_pattern(&f.path_of(&v), "raw", 0xc2, 5 * MIB, MIB));
}

/// Asserts the import is refused as bad input and nothing reached the pool.
async fn assert_refused(f: &Fixture, path: &Path, format: ImageFormat, expect: &str) {
    let before = f.listing();
    let err = import(f, path, format).await.unwrap_err();
    assert!(
        matches!(err, StorageError::InvalidArgument(_) | StorageError::NotFound(_)),
        "{}: {err:?}",
        path.display()
    );
    assert!(err.to_string().contains(expect), "{}: expected {expect:?} in: {err}", path.display());
    assert_eq!(f.listing(), before, "nothing written for {}", path.display());
}

#[tokio::test]
async fn paths_outside_the_import_directories_are_refused() {
    let f = Fixture::new().await;
    let outside = raw_image(f.root.path(), "outside.img");
    assert_refused(&f, &outside, ImageFormat::Raw, "not inside an import directory").await;
    assert_refused(&f, Path::new("/etc/passwd"), ImageFormat::Raw, "not inside an import directory").await;
    let sneaky = f.images_dir().join("../outside.img");
    assert_refused(&f, &sneaky, ImageFormat::Raw, "not inside an import directory").await;
    let link = f.images_dir().join("link.img");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    assert_refused(&f, &link, ImageFormat::Raw, "not inside an import directory").await;
    assert_refused(&f, Path::new("images/disk.img"), ImageFormat::Raw, "must be absolute").await;
    assert_refused(&f, &f.images_dir().join("missing.img"), ImageFormat::Raw, "does not exist").await;
    std::fs::create_dir(f.images_dir().join("dir.img")).unwrap();
    assert_refused(&f, &f.images_dir().join("dir.img"), ImageFormat::Raw, "not a regular file").await;
}

#[tokio::test]
async fn a_qcow2_with_a_backing_file_is_refused() {
    let f = Fixture::new().await;
    let evil = f.images_dir().join("evil.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", evil.to_str().unwrap(), "1M"]);
    assert_refused(&f, &evil, ImageFormat::Qcow2, "backing file").await;
}

#[tokio::test]
async fn a_qcow2_with_an_external_data_file_is_refused() {
    let f = Fixture::new().await;
    let evil = f.images_dir().join("evil.qcow2");
    let data = f.images_dir().join("data.raw");
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", &format!("data_file={}", data.display()), evil.to_str().unwrap(), "1M"]);
    assert_refused(&f, &evil, ImageFormat::Qcow2, "external data file").await;
}

#[tokio::test]
async fn a_raw_file_holding_a_qcow2_is_refused() {
    let f = Fixture::new().await;
    let disguised = f.images_dir().join("disguised.img");
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", disguised.to_str().unwrap(), "1M"]);
    assert_refused(&f, &disguised, ImageFormat::Raw, "declared raw but its content is a qcow2 image").await;
}

#[tokio::test]
async fn a_declared_format_that_does_not_match_the_content_is_refused() {
    let f = Fixture::new().await;
    let raw = raw_image(&f.images_dir(), "plain.img");
    assert_refused(&f, &raw, ImageFormat::Qcow2, "declared qcow2 but its content is a raw image").await;
    let vdi = f.images_dir().join("disk.vdi");
    convert(&raw, &vdi, "vdi", &[]);
    assert_refused(&f, &vdi, ImageFormat::Vmdk, "declared vmdk but its content is a vdi image").await;
}

#[tokio::test]
async fn a_corrupt_qcow2_is_refused() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let f = Fixture::new().await;
    let bad = f.images_dir().join("corrupt.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", bad.to_str().unwrap(), "64M"]);
    write_pattern(&bad, "qcow2", 0x11, 0, MIB);
    // Point the first L1 entry at an unaligned L2 table.
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&bad).unwrap();
    let mut header = [0u8; 48];
    file.read_exact(&mut header).unwrap();
    let l1_offset = u64::from_be_bytes(header[40..48].try_into().unwrap());
    file.seek(SeekFrom::Start(l1_offset)).unwrap();
    file.write_all(&((1u64 << 63) | 0x12345).to_be_bytes()).unwrap();
    drop(file);
    assert_refused(&f, &bad, ImageFormat::Qcow2, "corrupt").await;

    let garbage = f.images_dir().join("garbage.qcow2");
    let mut bytes = b"QFI\xfb\x00\x00\x00\x03".to_vec();
    bytes.resize(4096, 0xff);
    std::fs::write(&garbage, bytes).unwrap();
    assert_refused(&f, &garbage, ImageFormat::Qcow2, "refused").await;
}

#[tokio::test]
async fn a_vmdk_whose_data_lives_in_other_files_is_refused() {
    let f = Fixture::new().await;
    let raw = raw_image(&f.images_dir(), "plain.img");
    let flat = f.images_dir().join("flat.vmdk");
    convert(&raw, &flat, "vmdk", &["subformat=monolithicFlat"]);
    // The confined qemu-img cannot even open the extent: refused, naming it.
    assert_refused(&f, &flat, ImageFormat::Vmdk, "another file (flat-flat.vmdk)").await;

    // A hand-written descriptor that points at a host file.
    let evil = f.images_dir().join("evil.vmdk");
    std::fs::write(
        &evil,
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\
         RW 8 FLAT \"/etc/shadow\" 0\n",
    )
    .unwrap();
    assert_refused(&f, &evil, ImageFormat::Vmdk, "refused").await;
}

/// The bytes checked are the bytes copied. While imports run, another
/// process keeps swapping the file between a clean image and one whose
/// backing file is a secret outside the import directories: every import
/// either copies the clean image or is refused; none ever copies the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_swapped_after_its_inspection_is_never_copied() {
    let f = Fixture::new().await;
    let secret = f.root.path().join("secret.raw");
    std::fs::write(&secret, vec![0x66u8; MIB as usize]).unwrap();
    let good = f.images_dir().join("good.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", good.to_str().unwrap(), "1M"]);
    write_pattern(&good, "qcow2", 0x77, 0, 64 * 1024);
    let evil = f.images_dir().join("evil.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", secret.to_str().unwrap(), "-F", "raw", evil.to_str().unwrap(), "1M"]);
    let target = f.images_dir().join("disk.qcow2");
    std::fs::hard_link(&good, &target).unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, dir, good, evil, target) = (stop.clone(), f.images_dir(), good.clone(), evil.clone(), target.clone());
        std::thread::spawn(move || {
            let tmp = dir.join(".swap");
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for from in [&evil, &good] {
                    let _ = std::fs::remove_file(&tmp);
                    std::fs::hard_link(from, &tmp).unwrap();
                    std::fs::rename(&tmp, &target).unwrap();
                    swaps += 1;
                    std::thread::sleep(std::time::Duration::from_micros(700));
                }
            }
            swaps
        })
    };
    let (mut copied, mut refused) = (0, 0);
    for _ in 0..60 {
        match import(&f, &target, ImageFormat::Qcow2).await {
            Ok(v) => {
                let path = f.path_of(&v);
                assert!(has_pattern(&path, "qcow2", 0x77, 0, 64 * 1024), "the clean image's data");
                assert!(has_pattern(&path, "qcow2", 0, 128 * 1024, 64 * 1024), "never the secret's (0x66)");
                copied += 1;
            }
            Err(e) => {
                assert!(matches!(e, StorageError::InvalidArgument(_)), "{e:?}");
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("{copied} imports copied the clean image, {refused} were refused, over {swaps} swaps");
    assert!(copied > 0 && refused > 0, "both files were met: {copied} copied, {refused} refused");
}
