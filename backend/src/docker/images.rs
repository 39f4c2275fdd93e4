//! `docker load`, `docker rmi` and `docker system df` over Corral's image store.
//!
//! - `POST /images/load`: the body (a `docker save` tarball or an OCI layout tar) goes through
//!   Corral's upload import — `--max-upload-size`, the room check, the temporary file, the
//!   audit row `image.import` as root — and the answer is dockerd's JSON-message stream,
//!   `{"stream":"Loaded image: busybox:latest\n"}` per name (`Loaded image ID: sha256:…` for
//!   an image without one), which the CLI prints. The import ends before the answer begins: a
//!   refused file is an HTTP error, not a message in the stream.
//! - `DELETE /images/{name}`: Corral's image removal (`image.remove`, audited), answered as
//!   dockerd does: `[{"Untagged": …}, …, {"Deleted": "sha256:…"}]`. Corral has no "untag": an
//!   image goes with all its names, so one with several names needs `-f` (dockerd's rule for
//!   an id referenced by several repositories), and `-f` never removes an image a container
//!   uses (409, dockerd's "cannot be forced").
//! - `POST /images/create?fromImage=…&tag=…` (`docker pull`, and the pull `docker run` tries
//!   for a missing image): Corral's registry pull (`http::start_pull`: admin, audited as
//!   `image.pull` by root), its progress as dockerd's JSON messages (`status`, `id`,
//!   `progressDetail`); a refusal before any progress is an HTTP error with the registry's
//!   reason, one after it the stream's `error` message. `fromSrc` (import) is not supported.
//! - `GET /system/df`: the bytes on disk of every stored layer (each counted once in
//!   `LayersSize`), of each image, and of each container's writable layer; Corral has no
//!   volumes and no build cache.

use axum::{
    Json,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{DockerError, manager, root};
use crate::http::AppState;

/// The name an upload over the Docker socket is audited under (`image:upload:docker-load`);
/// it also names an OCI layout's bare tag (`latest` → `docker-load:latest`).
const LOAD_SOURCE: &str = "docker-load";

fn internal(e: impl std::fmt::Display) -> DockerError {
    DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The lines of `docker load`'s answer for what an import stored.
pub(super) fn loaded_messages(images: &[wire::Image]) -> Vec<Value> {
    images
        .iter()
        .flat_map(|i| {
            if i.tags.is_empty() {
                vec![format!("Loaded image ID: {}\n", i.id)]
            } else {
                i.tags
                    .iter()
                    .map(|t| format!("Loaded image: {t}\n"))
                    .collect()
            }
        })
        .map(|line| json!({ "stream": line }))
        .collect()
}

/// `POST /images/load` (`docker load -i FILE`, `quiet` or not: there is no progress to show).
pub(super) async fn images_load(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, DockerError> {
    let images = crate::http::import_upload(&state, &root(), &headers, body, LOAD_SOURCE).await?;
    let mut out = Vec::new();
    for m in loaded_messages(&images) {
        out.extend(m.to_string().into_bytes());
        out.push(b'\n');
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

/// The image `reference` names, as dockerd reads one: `name` (`name:latest`), `name:tag`,
/// `sha256:<hex>`, or a prefix of the id's hex digits.
pub(super) fn find<'a>(images: &'a [wire::Image], reference: &str) -> Option<&'a wire::Image> {
    let with_tag = match reference.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => reference.to_owned(),
        _ => format!("{reference}:latest"),
    };
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let by_id = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    images
        .iter()
        .find(|i| i.tags.contains(&with_tag) || i.tags.iter().any(|t| t == reference))
        .or_else(|| {
            let mut hits = images.iter().filter(|i| {
                i.id == reference || (by_id && i.id.trim_start_matches("sha256:").starts_with(hex))
            });
            match (hits.next(), hits.next()) {
                (Some(i), None) => Some(i),
                _ => None,
            }
        })
}

/// The 12 hex digits dockerd names an image by in its messages.
fn short_id(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// `docker rmi`'s answer for an image that went.
pub(super) fn removed_messages(image: &wire::Image) -> Vec<Value> {
    let mut out: Vec<Value> = image
        .tags
        .iter()
        .map(|t| json!({ "Untagged": t }))
        .collect();
    out.push(json!({ "Deleted": image.id }));
    out
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct RemoveQuery {
    force: Option<String>,
    #[serde(flatten)]
    _rest: std::collections::HashMap<String, String>,
}

/// `DELETE /images/{name}` (`docker rmi [-f] NAME`).
pub(super) async fn image_remove(
    State(state): State<AppState>,
    Path(reference): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let force = matches!(q.force.as_deref(), Some("1" | "true" | "True"));
    let images = manager(&state)?.images().list().map_err(internal)?;
    let no_such = || DockerError(StatusCode::NOT_FOUND, format!("No such image: {reference}"));
    let image = find(&images, &reference).ok_or_else(no_such)?.clone();
    if image.tags.len() > 1 && !force {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!(
                "conflict: unable to delete {} (must be forced) - image is referenced by several \
                 names ({}) and Corral removes an image with all its names",
                short_id(&image.id),
                image.tags.join(", ")
            ),
        ));
    }
    match crate::http::remove_image(&state, &root(), &image.id).await {
        Ok(_) => Ok(Json(removed_messages(&image))),
        Err(e) => {
            let e = DockerError::from(e);
            Err(match e.0 {
                StatusCode::CONFLICT => DockerError(
                    StatusCode::CONFLICT,
                    format!(
                        "conflict: unable to delete {reference} (cannot be forced) - {}",
                        e.1
                    ),
                ),
                StatusCode::NOT_FOUND => no_such(),
                _ => e,
            })
        }
    }
}

/// Whether container `c` was created from `image` (its reference is a name or the id).
fn uses(c: &wire::Container, image: &wire::Image) -> bool {
    let r = c.image.as_str();
    r == image.id
        || image.tags.iter().any(|t| t == r)
        || image.tags.contains(&format!("{r}:latest"))
        || (r.len() >= 6
            && r.bytes().all(|b| b.is_ascii_hexdigit())
            && image.id.trim_start_matches("sha256:").starts_with(r))
}

/// `GET /system/df`'s body from the store's images, each layer's bytes on disk, and each
/// container with the bytes of its writable layer.
pub(super) fn disk_usage(
    images: &[wire::Image],
    layer_sizes: &std::collections::BTreeMap<String, u64>,
    containers: &[(wire::Container, u64)],
    now: i64,
) -> Value {
    let size_of = |l: &String| layer_sizes.get(l).copied().unwrap_or(0);
    let image_size = |i: &wire::Image| i.layers.iter().map(size_of).sum::<u64>();
    let rows: Vec<Value> = images
        .iter()
        .map(|i| {
            let shared: u64 = i
                .layers
                .iter()
                .filter(|l| images.iter().any(|o| o.id != i.id && o.layers.contains(l)))
                .map(size_of)
                .sum();
            let users = containers.iter().filter(|(c, _)| uses(c, i)).count();
            let mut v = super::shapes::image_summary(i);
            v["Size"] = json!(image_size(i));
            v["VirtualSize"] = json!(image_size(i));
            v["SharedSize"] = json!(shared);
            v["Containers"] = json!(users);
            v
        })
        .collect();
    let cont: Vec<Value> = containers
        .iter()
        .map(|(c, rw)| {
            let base = images.iter().find(|i| uses(c, i)).map_or(0, image_size);
            let mut v = super::shapes::summary(c, now);
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rw + base);
            v
        })
        .collect();
    json!({
        "LayersSize": layer_sizes.values().sum::<u64>(),
        "Images": rows,
        "Containers": cont,
        "Volumes": [],
        "BuildCache": [],
    })
}

/// `GET /system/df` (`docker system df [-v]`).
pub(super) async fn system_df(State(state): State<AppState>) -> Result<Json<Value>, DockerError> {
    let m = manager(&state)?;
    let store = m.images().clone();
    let (images, layers) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::image::ImageError>((store.list()?, store.layer_sizes()?))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let containers = m.writable_sizes().await?;
    let now = crate::metering::sampler::wall_ms() / 1000;
    Ok(Json(disk_usage(&images, &layers, &containers, now)))
}

/// `POST /images/create` (`docker pull`; `docker run` of a missing image).
pub(super) async fn image_pull(
    State(state): State<AppState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, DockerError> {
    if q.contains_key("fromSrc") {
        return Err(DockerError(
            StatusCode::NOT_IMPLEMENTED,
            "docker import (fromSrc) is not supported by Corral's Docker API; use `corral image \
             import FILE`"
                .into(),
        ));
    }
    let Some(from) = q.get("fromImage").filter(|f| !f.is_empty()) else {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "fromImage is required".into(),
        ));
    };
    let reference = match q.get("tag").map(String::as_str) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) if !t.is_empty() => format!("{from}:{t}"),
        _ => from.clone(),
    };
    let crate::http::Started { first, rx } =
        crate::http::start_pull(&state, &root(), &reference).await?;
    let lines = futures::stream::unfold((Some(first), Some(rx)), |(first, rx)| async move {
        let mut rx = rx?;
        let msg = match first {
            Some(ev) => pull_message(&ev),
            None => match rx.recv().await? {
                crate::http::PullMsg::Event(ev) => pull_message(&ev),
                crate::http::PullMsg::Done(Ok(_)) => return None,
                crate::http::PullMsg::Done(Err(e)) => {
                    let m = e.body().message;
                    let v = json!({"errorDetail": {"message": m}, "error": m});
                    return Some((json_line(&v), (None, None)));
                }
            },
        };
        Some((json_line(&msg), (None, Some(rx))))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response())
}

fn json_line(v: &Value) -> Result<Vec<u8>, std::convert::Infallible> {
    let mut l = v.to_string().into_bytes();
    l.push(b'\n');
    Ok(l)
}

/// One of dockerd's pull messages: `{"status", "id", "progressDetail", "progress"}`.
fn pull_message(ev: &crate::registry::PullEvent) -> Value {
    let mut m = json!({ "status": ev.status });
    if let Some(id) = &ev.id {
        m["id"] = json!(id);
    }
    if ev.total > 0 {
        m["progressDetail"] = json!({"current": ev.current, "total": ev.total});
        let width = 50u64;
        let done = (ev.current.min(ev.total) * width) / ev.total;
        let bar: String = (0..width)
            .map(|i| match i.cmp(&done) {
                std::cmp::Ordering::Less => '=',
                std::cmp::Ordering::Equal => '>',
                std::cmp::Ordering::Greater => ' ',
            })
            .collect();
        m["progress"] = json!(format!(
            "[{bar}] {:.1}MB/{:.1}MB",
            ev.current as f64 / 1e6,
            ev.total as f64 / 1e6
        ));
    } else {
        m["progressDetail"] = json!({});
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tags: &[&str], layers: &[&str]) -> wire::Image {
        wire::Image {
            id: id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            layers: layers.iter().map(|t| t.to_string()).collect(),
            size: 1,
            created_at: 0,
        }
    }

    #[test]
    fn references_read_like_dockerds() {
        let list = [
            image("sha256:abc123ff", &["busybox:latest"], &[]),
            image("sha256:abd456ff", &["web:1", "web:prod"], &[]),
            image("sha256:99", &[], &[]),
        ];
        let id = |r: &str| find(&list, r).map(|i| i.id.as_str());
        assert_eq!(id("busybox"), Some("sha256:abc123ff"));
        assert_eq!(id("busybox:latest"), Some("sha256:abc123ff"));
        assert_eq!(id("web:prod"), Some("sha256:abd456ff"));
        assert_eq!(id("web"), None, "no web:latest");
        assert_eq!(id("abc1"), Some("sha256:abc123ff"));
        assert_eq!(id("sha256:abd4"), Some("sha256:abd456ff"));
        assert_eq!(id("ab"), None, "an ambiguous prefix names nothing");
        assert_eq!(id("sha256:99"), Some("sha256:99"));
        assert_eq!(id("nothing"), None);
    }

    #[test]
    fn load_and_rmi_answer_dockerds_messages() {
        let tagged = image("sha256:aa", &["busybox:latest", "bb:1"], &[]);
        let bare = image("sha256:bb", &[], &[]);
        assert_eq!(
            loaded_messages(&[tagged.clone(), bare]),
            [
                json!({"stream": "Loaded image: busybox:latest\n"}),
                json!({"stream": "Loaded image: bb:1\n"}),
                json!({"stream": "Loaded image ID: sha256:bb\n"}),
            ]
        );
        assert_eq!(
            removed_messages(&tagged),
            [
                json!({"Untagged": "busybox:latest"}),
                json!({"Untagged": "bb:1"}),
                json!({"Deleted": "sha256:aa"}),
            ]
        );
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn disk_usage_counts_each_layer_once_and_shares() {
        let a = image("sha256:a1", &["a:1"], &["sha256:l1", "sha256:l2"]);
        let b = image("sha256:b1", &["b:1"], &["sha256:l1"]);
        let sizes = [("sha256:l1".to_owned(), 100), ("sha256:l2".to_owned(), 20)]
            .into_iter()
            .collect();
        let v = disk_usage(&[a, b], &sizes, &[], 0);
        assert_eq!(v["LayersSize"], 120);
        assert_eq!(v["Images"][0]["Size"], 120);
        assert_eq!(v["Images"][0]["SharedSize"], 100);
        assert_eq!(v["Images"][1]["Size"], 100);
        assert_eq!(v["Images"][1]["Containers"], 0);
        assert_eq!(v["Volumes"], json!([]));
        assert_eq!(v["BuildCache"], json!([]));
    }
}
