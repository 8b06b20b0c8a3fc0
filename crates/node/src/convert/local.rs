use limiquantix_api::v1 as pb;
use limiquantix_storage::StorageError;
use limiquantix_storage::model::LocalPoolConfig;

pub fn config_in(c: pb::LocalPoolConfig) -> Result<LocalPoolConfig, StorageError> {
    if c.path.is_empty() {
        return Err(StorageError::invalid("local pool path is empty"));
    }
    Ok(LocalPoolConfig { path: c.path.into() })
}

pub fn config_out(c: &LocalPoolConfig) -> pb::LocalPoolConfig {
    pb::LocalPoolConfig { path: c.path.display().to_string() }
}
