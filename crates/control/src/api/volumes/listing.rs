//! Listing volumes a page at a time: in the store's order (by id, one range
//! read per page), or sorted by a column the caller picks. A sorted page
//! reads every volume under the prefix and sorts the ones that match; its
//! token is the last row's (sort key, id), so the next page starts right
//! after it even when volumes come and go in between.

use limiquantix_api::v1 as pb;

use crate::error::{ApiError, ApiResult};
use crate::repo::Repo;

/// What a listing keeps.
pub struct Filter<'a> {
    pub state: pb::VolumeState,
    pub name_prefix: &'a str,
    pub labels: &'a std::collections::HashMap<String, String>,
}

impl Filter<'_> {
    pub fn matches(&self, v: &pb::Volume) -> bool {
        (self.state == pb::VolumeState::Unspecified || v.state == self.state as i32)
            && v.name.starts_with(self.name_prefix)
            && self.labels.iter().all(|(k, val)| v.labels.get(k) == Some(val))
    }
}

/// One page in the store's order (by id under `prefix`).
pub async fn by_id(repo: &Repo, prefix: &str, filter: &Filter<'_>, page_size: usize, token: &str) -> ApiResult<(Vec<pb::Volume>, String)> {
    let mut after = (!token.is_empty()).then(|| format!("{prefix}{token}"));
    let mut volumes = Vec::new();
    let mut next = String::new();
    'scan: loop {
        let batch = repo.list::<pb::Volume>(prefix, after.as_deref(), page_size * 2).await?;
        let exhausted = batch.len() < page_size * 2;
        for (key, v) in batch {
            after = Some(key.clone());
            if filter.matches(&v.value) {
                volumes.push(v.value);
                if volumes.len() == page_size {
                    next = key.trim_start_matches(prefix).to_owned();
                    break 'scan;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    // The last page has no token, even when it is exactly full.
    if !next.is_empty() && repo.list::<pb::Volume>(prefix, after.as_deref(), 1).await?.is_empty() {
        next.clear();
    }
    Ok((volumes, next))
}

/// The value a volume sorts by, as text that sorts the same way (numbers
/// zero-padded). `pool_names` maps pool ids to names.
fn sort_key(v: &pb::Volume, order: pb::VolumeOrder, pool_names: &std::collections::HashMap<String, String>) -> String {
    match order {
        pb::VolumeOrder::Unspecified => String::new(),
        pb::VolumeOrder::Name => v.name.clone(),
        pb::VolumeOrder::Size => format!("{:020}", v.size_bytes),
        // Shifted so that times before 1970 (negative) still sort first.
        pb::VolumeOrder::Created => format!("{:020}", (i128::from(v.created_unix_seconds) - i128::from(i64::MIN)) as u64),
        pb::VolumeOrder::State => crate::records::state_name(v.state).to_owned(),
        pb::VolumeOrder::Pool => pool_names.get(&v.pool_id).cloned().unwrap_or_default(),
    }
}

/// A sorted listing's token: which order it belongs to, and the last row's
/// (key, id). Sort keys never hold a newline (names and numbers).
fn token_of(order: pb::VolumeOrder, descending: bool, key: &str, id: &str) -> String {
    format!("{}{}\n{key}\n{id}", order as i32, if descending { "d" } else { "a" })
}

fn parse_token(token: &str, order: pb::VolumeOrder, descending: bool) -> ApiResult<Option<(String, String)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let mut parts = token.splitn(3, '\n');
    let (Some(head), Some(key), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::invalid("the page token is not one this listing gave"));
    };
    if head != format!("{}{}", order as i32, if descending { "d" } else { "a" }) {
        return Err(ApiError::invalid("the page token belongs to a listing in another order: start again from the first page"));
    }
    Ok(Some((key.to_owned(), id.to_owned())))
}

/// One page sorted by `order` (ties by id).
pub async fn sorted(
    repo: &Repo,
    prefix: &str,
    filter: &Filter<'_>,
    order: pb::VolumeOrder,
    descending: bool,
    page_size: usize,
    token: &str,
) -> ApiResult<(Vec<pb::Volume>, String)> {
    let start = parse_token(token, order, descending)?;
    let pool_names = if order == pb::VolumeOrder::Pool {
        repo.list::<pb::Pool>(crate::keys::POOLS, None, 0).await?.into_iter().map(|(_, p)| (p.value.id, p.value.name)).collect()
    } else {
        Default::default()
    };
    let mut rows: Vec<(String, pb::Volume)> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = repo.list::<pb::Volume>(prefix, after.as_deref(), 1000).await?;
        let exhausted = batch.len() < 1000;
        after = batch.last().map(|(k, _)| k.clone()).or(after);
        rows.extend(batch.into_iter().map(|(_, v)| v.value).filter(|v| filter.matches(v)).map(|v| (sort_key(&v, order, &pool_names), v)));
        if exhausted {
            break;
        }
    }
    let cmp = |a: &(String, pb::Volume), b: &(String, pb::Volume)| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id));
    rows.sort_by(|a, b| if descending { cmp(b, a) } else { cmp(a, b) });
    let past = |row: &(String, pb::Volume)| match &start {
        None => true,
        Some((key, id)) => {
            let here = (&row.0, &row.1.id);
            if descending { here < (key, id) } else { here > (key, id) }
        }
    };
    let mut rest = rows.into_iter().filter(past);
    let page: Vec<(String, pb::Volume)> = rest.by_ref().take(page_size).collect();
    let next = match (page.last(), rest.next()) {
        (Some((key, v)), Some(_)) => token_of(order, descending, key, &v.id),
        _ => String::new(),
    };
    Ok((page.into_iter().map(|(_, v)| v).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_belong_to_one_order() {
        let t = token_of(pb::VolumeOrder::Size, true, "00000000000000001024", "id-1");
        assert_eq!(parse_token(&t, pb::VolumeOrder::Size, true).unwrap(), Some(("00000000000000001024".into(), "id-1".into())));
        assert!(parse_token(&t, pb::VolumeOrder::Size, false).is_err());
        assert!(parse_token(&t, pb::VolumeOrder::Name, true).is_err());
        assert!(parse_token("garbage", pb::VolumeOrder::Name, false).is_err());
    }

    #[test]
    fn created_times_sort_as_numbers_even_before_1970() {
        let at = |s: i64| sort_key(&pb::Volume { created_unix_seconds: s, ..Default::default() }, pb::VolumeOrder::Created, &Default::default());
        let mut keys = [at(10), at(-5), at(9), at(i64::MAX), at(i64::MIN)];
        keys.sort();
        assert_eq!(keys, [at(i64::MIN), at(-5), at(9), at(10), at(i64::MAX)]);
    }
}
