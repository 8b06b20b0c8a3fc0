//! qemu-nbd, typed: one volume of this node exported read-only over NBD,
//! bound to one address, with TLS keyed by a one-use PSK, for as long as a
//! copy needs it (the command's timeout ends it at the latest; the node's
//! death too).

use std::net::IpAddr;
use std::time::Duration;

use super::ToolCommand;
use super::confine::Confinement;
use super::qemu_img::{VolumeLocation, rbd_filename};
use crate::model::ImageFormat;
use crate::nbd::{PskDir, TLS_CREDS_ID};

const PROGRAM: &str = "qemu-nbd";

pub struct ExportOptions<'a> {
    pub location: &'a VolumeLocation,
    pub format: ImageFormat,
    pub bind: IpAddr,
    pub port: u16,
    pub export_name: &'a str,
    pub psk_dir: &'a PskDir,
    /// The longest the export may live.
    pub lifetime: Duration,
}

/// The export's command: persistent (a pull may reconnect) until killed.
pub fn export_command(o: &ExportOptions<'_>) -> ToolCommand {
    let cmd = ToolCommand::new(PROGRAM, o.lifetime)
        .args(["--read-only", "--persistent", "--shared=4"])
        .arg("--bind")
        .arg(o.bind.to_string())
        .arg("--port")
        .arg(o.port.to_string())
        .arg("--export-name")
        .arg(o.export_name)
        .arg("--object")
        .arg(o.psk_dir.tls_object("server", None))
        .arg("--tls-creds")
        .arg(TLS_CREDS_ID);
    let confinement = Confinement::new().read_path(o.psk_dir.path());
    let (cmd, confinement) = match o.location {
        VolumeLocation::File { path, chain_dir } => {
            (cmd.args(["--format", o.format.as_str(), "--"]).arg(path), confinement.read_path(path).read_path(chain_dir))
        }
        VolumeLocation::Rbd { pool, namespace, image, conf, keyring, client_id } => (
            cmd.args(["--format", o.format.as_str(), "--"]).arg(rbd_filename(pool, namespace, image, conf, client_id)),
            confinement.read_path(conf).read_path(keyring),
        ),
        VolumeLocation::Nfs { url } => (cmd.args(["--format", o.format.as_str(), "--"]).arg(url), confinement),
    };
    cmd.confine(confinement)
}
