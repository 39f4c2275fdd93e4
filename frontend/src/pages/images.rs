//! Images: the list (tags, id, size, layers, imported), and for admins the upload of a
//! `docker save` tarball or OCI archive (sent as the request body, with a progress bar while it
//! leaves the browser), a pull from a registry (`POST /api/v1/images/pull`: the outcome, or
//! the registry's refusal under the field), and removal (an image a container uses is
//! refused, and the page says so).

use leptos::prelude::*;

use crate::{
    api::{self, ApiFailure},
    components::{
        poll::poll,
        ui::{ConfirmButton, ErrorBox, Field, FormError, polled_view},
    },
    format,
    session::use_session,
    types::{Image, PullImage, Pulled},
};

/// Where an upload is: bytes sent of the total, then the daemon importing.
#[derive(Clone, Copy, PartialEq)]
enum Upload {
    Idle,
    Sending(f64, f64),
    Importing,
}

#[component]
pub fn Images() -> impl IntoView {
    let session = use_session();
    let images = poll(0, || api::get::<Vec<Image>>("/api/v1/images"));
    let op_error = RwSignal::new(None::<ApiFailure>);
    let done = RwSignal::new(None::<String>);
    let tag = RwSignal::new(String::new());
    let errors = RwSignal::new(Vec::<(String, String)>::new());
    let state = RwSignal::new(Upload::Idle);
    let file_input = NodeRef::<leptos::html::Input>::new();
    let reference = RwSignal::new(String::new());
    let pull_errors = RwSignal::new(Vec::<(String, String)>::new());
    let pulling = RwSignal::new(false);
    let pulled = RwSignal::new(None::<Pulled>);

    let pull = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        pulled.set(None);
        let r = reference.get_untracked().trim().to_owned();
        if r.is_empty() {
            pull_errors.set(vec![(
                "reference".into(),
                "name an image: busybox, alpine:3.20, registry.example.com/app:v2".into(),
            )]);
            return;
        }
        pull_errors.set(vec![]);
        pulling.set(true);
        leptos::task::spawn_local(async move {
            let req = PullImage { reference: r };
            let out = api::post::<_, Pulled>("/api/v1/images/pull", &req).await;
            pulling.set(false);
            match out {
                Ok(p) => {
                    pulled.set(Some(p));
                    reference.set(String::new());
                    images.refresh();
                }
                // Every refusal (unknown image, unauthorized, no matching platform, …) is
                // about the reference: shown under it, with the server's words.
                Err(e) => pull_errors.set(vec![("reference".into(), e.error.message.clone())]),
            }
        });
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        done.set(None);
        let file = file_input
            .get_untracked()
            .and_then(|i| i.files())
            .and_then(|l| l.get(0));
        let Some(file) = file else {
            errors.set(vec![(
                "file".into(),
                "choose a docker save tarball or an OCI archive".into(),
            )]);
            return;
        };
        errors.set(vec![]);
        let mut q = format!("?filename={}", api::enc(&file.name()));
        let t = tag.get_untracked().trim().to_owned();
        if !t.is_empty() {
            q.push_str(&format!("&tag={}", api::enc(&t)));
        }
        state.set(Upload::Sending(0.0, file.size()));
        leptos::task::spawn_local(async move {
            let r = api::upload::<Image>(
                &format!("/api/v1/images/import{q}"),
                &file,
                move |sent, total| {
                    state.set(if total > 0.0 && sent >= total {
                        Upload::Importing
                    } else {
                        Upload::Sending(sent, total)
                    });
                },
            )
            .await;
            state.set(Upload::Idle);
            match r {
                Ok(img) => {
                    done.set(Some(if img.tags.is_empty() {
                        img.id.clone()
                    } else {
                        img.tags.join(", ")
                    }));
                    tag.set(String::new());
                    if let Some(i) = file_input.get_untracked() {
                        i.set_value("");
                    }
                    images.refresh();
                }
                Err(e) => {
                    let field = match e.field() {
                        Some("tag") => "tag",
                        _ => "file",
                    };
                    errors.set(vec![(field.into(), e.error.message.clone())]);
                }
            }
        });
    };
    let remove = move |reference: String| {
        leptos::task::spawn_local(async move {
            match api::delete(&format!("/api/v1/images/{}", api::enc(&reference))).await {
                Ok(()) => {
                    op_error.set(None);
                    images.refresh();
                }
                Err(e) => op_error.set(Some(e)),
            }
        });
    };
    let file_error =
        move || errors.with(|e| e.iter().find(|(f, _)| f == "file").map(|(_, m)| m.clone()));
    let busy = move || state.get() != Upload::Idle;
    let admin = move || session.is_admin();

    view! {
        <div class="page-head"><h1>"Images"</h1></div>
        {move || op_error.get().map(|e| view! { <ErrorBox error=e /> })}
        <Show when=admin>
            <section class="card" data-testid="image-upload">
                <h2>"Import an image"</h2>
                <p class="muted">"A " <code>"docker save"</code> " tarball or an OCI archive ("
                    <code>"skopeo copy … oci-archive:app.tar:latest"</code>
                    "), optionally gzip or zstd. It is uploaded to the daemon, then imported; an OCI archive that names its image by a tag only is named after the file (app.tar → app:latest) or the name below."</p>
                <form class="inline-form" on:submit=submit>
                    <div class="field" class:invalid=move || file_error().is_some()>
                        <label for="f-file">"File"</label>
                        <input id="f-file" type="file" node_ref=file_input data-testid="image-file"
                            accept=".tar,.tgz,.gz,.zst,.oci,application/x-tar" disabled=busy />
                        <small class="field-error" data-field="file" role="alert">{file_error}</small>
                    </div>
                    <Field label="Name" name="tag" value=tag errors=errors placeholder="web or web:1.2 (optional)" />
                    <button class="btn primary" type="submit" data-testid="upload" disabled=busy>
                        {move || if busy() { "Uploading…" } else { "Upload" }}
                    </button>
                </form>
                {move || match state.get() {
                    Upload::Idle => None,
                    Upload::Sending(sent, total) => Some(view! {
                        <div class="upload-progress" data-testid="upload-progress">
                            <progress max=total value=sent></progress>
                            <span class="muted small">{format!("{} of {}", format::bytes(sent), format::bytes(total))}</span>
                        </div>
                    }.into_any()),
                    Upload::Importing => Some(view! {
                        <div class="upload-progress" data-testid="upload-progress">
                            <progress></progress>
                            <span class="muted small">"Uploaded; importing (verifying and unpacking the layers)…"</span>
                        </div>
                    }.into_any()),
                }}
                {move || done.get().map(|t| view! {
                    <p class="notice ok" role="status" data-testid="upload-done">"Imported " <b>{t}</b></p>
                })}
                <FormError errors=errors known=&["file", "tag"] />
            </section>
        </Show>
        <Show when=admin>
            <section class="card" data-testid="image-pull">
                <h2>"Pull from a registry"</h2>
                <p class="muted">"Like " <code>"docker pull"</code> ": " <code>"busybox"</code>
                    " is Docker Hub's; " <code>"HOST[:PORT]/repo:tag"</code> " or " <code>"…@sha256:…"</code>
                    " elsewhere. Credentials come from " <code>"corral login"</code> "."</p>
                <form class="inline-form" on:submit=pull>
                    <Field label="Image" name="reference" value=reference errors=pull_errors placeholder="alpine:3.20" />
                    <button class="btn primary" type="submit" data-testid="pull" disabled=move || pulling.get()>
                        {move || if pulling.get() { "Pulling…" } else { "Pull" }}
                    </button>
                </form>
                {move || pulled.get().map(|p| {
                    let what = if p.up_to_date { "Image is up to date for " } else { "Downloaded newer image for " };
                    view! {
                        <p class="notice ok" role="status" data-testid="pull-done">{what} <b>{p.name.clone()}</b>
                            " " <span class="mono muted small">{p.digest.clone()}</span></p>
                    }
                })}
                <FormError errors=pull_errors known=&["reference"] />
            </section>
        </Show>
        <section class="card">
            <h2>"Images"</h2>
            {polled_view(images, "images", move |list: Vec<Image>| {
                if list.is_empty() {
                    return view! { <p class="empty-state">"No images yet."</p> }.into_any();
                }
                view! {
                    <div class="table-wrap">
                        <table class="table" data-testid="images-table">
                            <thead><tr><th>"Tags"</th><th>"ID"</th><th>"Size"</th><th>"Layers"</th><th>"Imported"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|i| {
                                    let short = i.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                                    let reference = i.tags.first().cloned().unwrap_or_else(|| i.id.clone());
                                    let shown = if i.tags.is_empty() { "<none>".to_owned() } else { i.tags.join(", ") };
                                    let row_ref = reference.clone();
                                    view! {
                                        <tr data-image=row_ref>
                                            <td class="mono"><b>{shown.clone()}</b></td>
                                            <td class="mono" title=i.id.clone()>{short}</td>
                                            <td class="nowrap">{format::bytes_u(i.size)}</td>
                                            <td>{i.layers.len()}</td>
                                            <td class="nowrap">{format::datetime(i.created_at)}</td>
                                            <td class="actions">
                                                <Show when=admin>
                                                    {
                                                        let r = reference.clone();
                                                        view! {
                                                            <ConfirmButton label="Remove" confirm=format!("Remove {shown}?") testid="remove-image"
                                                                on_confirm=Callback::new(move |_| remove(r.clone())) />
                                                        }
                                                    }
                                                </Show>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            })}
        </section>
    }
}
