//! The docker-like container commands: `run`, `create`, `start`, `ps`, `stop`, `kill`,
//! `restart`, `rm`, `freeze`, `thaw`, `inspect`, `logs`, `exec`, `update`, `image import`,
//! `images`, `rmi`.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hyper::Method;

use super::limits::LimitArgs;
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and start a container; without -d, stream its output and exit with its code.
    Run(Box<RunArgs>),
    /// Create a container without starting it (takes `run`'s flags); prints its name.
    Create(Box<CreateArgs>),
    /// Start created or exited containers; -a: one, with its new output streamed and its exit
    /// code as ours (like `run` without -d).
    Start {
        /// Stream the container's output from this start on and exit with its code.
        #[arg(short, long)]
        attach: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List running containers (-a: all).
    Ps(super::ps::PsArgs),
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        #[arg(short, long)]
        time: Option<u64>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal (default KILL).
    Kill {
        #[arg(short, long)]
        signal: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop and start again.
    Restart {
        #[arg(short, long)]
        time: Option<u64>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers (-f: kill a running one first).
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Freeze every process of a container.
    Freeze { name: String },
    /// Thaw a frozen container.
    Thaw { name: String },
    /// Show a container as JSON.
    Inspect { name: String },
    /// Show a container's output (-f: follow).
    Logs {
        #[arg(short, long)]
        follow: bool,
        #[arg(short = 'n', long)]
        tail: Option<usize>,
        name: String,
    },
    /// Run a command inside a running container, with all its restrictions; its output
    /// streams to our stdout and stderr, and we exit with its code.
    Exec {
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// Forward our stdin to the command (`echo hi | corral exec -i web cat`).
        #[arg(short = 'i', long)]
        interactive: bool,
        /// A pseudo-terminal for the command (ours in raw mode, resized with our window).
        #[arg(short = 't', long)]
        tty: bool,
        /// Keys that end the session, Docker style (default ctrl-p,ctrl-q; "" for none).
        #[arg(long, value_name = "KEYS")]
        detach_keys: Option<String>,
        /// Kill the command (and what it started) after SECONDS (default: never, like docker).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        name: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Attach to a running container's process: its terminal (created with -t) or its output,
    /// and its stdin (created with -i). Ctrl-P Ctrl-Q (or --detach-keys) detaches and leaves
    /// it running; otherwise we exit with its code when it ends.
    Attach {
        /// Keys that detach, Docker style (default ctrl-p,ctrl-q; "" for none).
        #[arg(long, value_name = "KEYS")]
        detach_keys: Option<String>,
        /// Do not forward our stdin.
        #[arg(long)]
        no_stdin: bool,
        name: String,
    },
    /// Change limits of a container live; unnamed limits stay as they are, `max` removes one.
    /// --undo puts back the limits before the latest change (or the change --to ID names).
    Update {
        name: String,
        #[command(flatten)]
        limits: Box<LimitArgs>,
        /// Undo a limit change: restore the limits before it (itself recorded as a change).
        #[arg(long)]
        undo: bool,
        /// With --undo: the change to undo, an id from the container's events (default: the
        /// latest limit change).
        #[arg(long, value_name = "ID", requires = "undo")]
        to: Option<i64>,
    },
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List images.
    Images,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a `docker save` tarball or an OCI image layout (directory or tar).
    Import {
        file: String,
        #[arg(short, long)]
        tag: Option<String>,
    },
    /// List images.
    Ls,
    /// Remove an image.
    Rm { image: String },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container's name.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// With -i/-t: keys that detach and leave it running (default ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Remove the container when it exits (once started).
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// What `run` and `create` share: the container's spec.
#[derive(Debug, Args)]
pub struct SpecArgs {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[arg(long)]
    pub hostname: Option<String>,
    /// KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// SRC:DST[:ro] bind mount (repeatable).
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// A tmpfs at this path (repeatable).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// uid[:gid].
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// none (own network namespace with loopback), host, or bridge.
    #[arg(long)]
    pub network: Option<String>,
    /// Publish a port: [IP:]HOST:CONTAINER[/tcp|/udp] (implies --network bridge).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// no, on-failure[:N] or always.
    #[arg(long)]
    pub restart: Option<String>,
    /// A user namespace: container root mapped to an unprivileged host range. `auto` picks a
    /// free range of 65536 ids; HOST_UID[:SIZE] names one (admins).
    #[arg(long, value_name = "auto|HOST_UID[:SIZE]")]
    pub userns: Option<String>,
    /// Use a host directory as the (read-only) root filesystem instead of an image.
    #[arg(long)]
    pub rootfs: Option<String>,
    /// A label, KEY=VALUE or KEY (repeatable); billing can total by label.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Seconds between SIGTERM and SIGKILL when the container is stopped (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Keep the process's stdin open (docker -i); `run -i` forwards ours to it.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the process a pseudo-terminal (docker -t); `run -it` attaches ours to it.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// IMAGE then CMD ARGS..., or just CMD ARGS... with --rootfs.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// `KEY=VALUE`, or a bare `KEY` with an empty value (as docker).
fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("{s:?} must be KEY=VALUE with a non-empty KEY"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Parses `1024`, `64k`, `256M`, `1.5G`, `1T` (binary units) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_lowercase();
            let m: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return Err(format!("unknown size unit in {s:?} (use k, M, G, T)")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 256M"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} is not a size like 256M"));
    }
    Ok((v * mult as f64) as u64)
}

/// `corral update NAME --knob …`: one PATCH of the changed knobs (the container is read first
/// only when a flag is relative to its limits).
async fn update_limits(
    client: &Client,
    name: &str,
    limits: &LimitArgs,
) -> anyhow::Result<wire::Container> {
    let path = format!("/api/v1/containers/{}", enc(name));
    let current = if limits.needs_current() {
        send::<wire::Container>(client, Method::GET, &path, None)
            .await?
            .limits
    } else {
        wire::Limits::default()
    };
    let patch = limits.to_patch(&current)?;
    if patch.is_empty() {
        bail!("name a limit to change (see corral update --help), or --undo");
    }
    send(
        client,
        Method::PATCH,
        &format!("{path}/limits"),
        Some(serde_json::to_value(patch)?),
    )
    .await
    .map_err(super::limits::name_the_flag)
}

/// `corral update NAME --undo [--to ID]`.
async fn undo_limits(
    client: &Client,
    name: &str,
    limits: &LimitArgs,
    event: Option<i64>,
) -> anyhow::Result<wire::Container> {
    if !limits.to_patch(&wire::Limits::default())?.is_empty() || limits.needs_current() {
        bail!("--undo takes no limit flags");
    }
    send(
        client,
        Method::POST,
        &format!("/api/v1/containers/{}/undo", enc(name)),
        Some(serde_json::to_value(wire::UndoLimits { event })?),
    )
    .await
}

/// Copies the answer of `GET path` to stdout as it arrives (a log, followed or not).
pub(super) async fn print_stream(client: &Client, path: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    client
        .stream(path, |chunk| {
            let _ = out.write_all(chunk);
            let _ = out.flush();
        })
        .await?;
    Ok(())
}

pub(super) async fn send<T: serde::de::DeserializeOwned>(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<T> {
    let json = body.map(|b| serde_json::to_vec(&b)).transpose()?;
    let (_, bytes) = client.request(method, path, json).await?;
    let bytes = if bytes.is_empty() {
        &b"null"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes).context("decode the daemon's answer")
}

/// Runs an exec with its output streamed: each frame's bytes go to our stdout or stderr as they
/// arrive (a blocked stdout blocks the command in the container); returns its exit code. When
/// our stdout is closed (`| head`), the connection is dropped and the daemon kills the command,
/// as a local command would die of SIGPIPE.
async fn exec_streamed(client: &Client, name: &str, body: Vec<u8>) -> anyhow::Result<i32> {
    use base64::Engine;
    // A frame holds at most 32 KiB of output (about 44 KiB of base64).
    const MAX_LINE: usize = 1 << 20;
    let (mut code, mut failed, mut bad, mut closed) = (None, None, None, false);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    client
        .stream_lines(
            Method::POST,
            &format!("/api/v1/containers/{}/exec", enc(name)),
            Some(body),
            MAX_LINE,
            &mut |line| {
                let frame = match serde_json::from_slice::<wire::ExecFrame>(line) {
                    Ok(f) => f,
                    Err(e) => {
                        bad = Some(e.to_string());
                        return false;
                    }
                };
                if let (Some(stream), Some(data)) = (frame.stream, &frame.data) {
                    let bytes = match base64::engine::general_purpose::STANDARD.decode(data) {
                        Ok(b) => b,
                        Err(e) => {
                            bad = Some(e.to_string());
                            return false;
                        }
                    };
                    let written = match stream {
                        wire::ExecStream::Stdout => {
                            out.write_all(&bytes).and_then(|()| out.flush())
                        }
                        wire::ExecStream::Stderr => err.write_all(&bytes),
                    };
                    if written.is_err() {
                        closed = true;
                        return false;
                    }
                }
                if frame.exit_code.is_some() {
                    code = frame.exit_code;
                }
                if frame.error.is_some() {
                    failed = frame.error;
                }
                true
            },
        )
        .await?;
    if let Some(e) = failed {
        bail!("{}", e.message);
    }
    if let Some(e) = bad {
        bail!("the daemon sent an exec frame that is not valid: {e}");
    }
    if closed {
        // Like a shell pipeline's writer killed by SIGPIPE.
        return Ok(128 + libc::SIGPIPE);
    }
    code.context("the daemon ended the exec without an exit code")
}

pub(super) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(client: &Client, cmd: ContainerCommand) -> anyhow::Result<()> {
    match cmd {
        ContainerCommand::Run(args) => run_container(client, *args).await,
        ContainerCommand::Create(args) => {
            let req = create_request(&args.spec, false, args.rm)?;
            let c = create(client, &req).await?;
            println!("{}", c.name);
            Ok(())
        }
        ContainerCommand::Start {
            attach: true,
            names,
        } => {
            let [name] = names.as_slice() else {
                bail!("--attach: name one container");
            };
            // The start appends to the container's log: skip what an earlier run wrote.
            let logs = format!("/api/v1/containers/{}/logs", enc(name));
            let (_, before) = client.request(Method::GET, &logs, None).await?;
            let _: wire::Container = send(
                client,
                Method::POST,
                &format!("/api/v1/containers/{}/start", enc(name)),
                None,
            )
            .await?;
            attach(client, name, before.len(), false).await
        }
        ContainerCommand::Start {
            attach: false,
            names,
        } => {
            for n in names {
                let _: wire::Container = send(
                    client,
                    Method::POST,
                    &format!("/api/v1/containers/{}/start", enc(&n)),
                    None,
                )
                .await?;
                println!("{n}");
            }
            Ok(())
        }
        ContainerCommand::Ps(args) => {
            let view = super::ps::View::new(&args)?;
            let list: Vec<wire::Container> = send(
                client,
                Method::GET,
                &format!("/api/v1/containers?all={}", view.all()),
                None,
            )
            .await?;
            print!(
                "{}",
                view.render(&list, crate::metering::sampler::wall_ms() / 1000)?
            );
            Ok(())
        }
        ContainerCommand::Stop { time, names } => {
            for n in names {
                let _: wire::Container = send(
                    client,
                    Method::POST,
                    &format!("/api/v1/containers/{}/stop", enc(&n)),
                    Some(serde_json::json!({ "timeout": time })),
                )
                .await?;
                println!("{n}");
            }
            Ok(())
        }
        ContainerCommand::Kill { signal, names } => {
            for n in names {
                let _: wire::Container = send(
                    client,
                    Method::POST,
                    &format!("/api/v1/containers/{}/kill", enc(&n)),
                    Some(serde_json::json!({ "signal": signal })),
                )
                .await?;
                println!("{n}");
            }
            Ok(())
        }
        ContainerCommand::Restart { time, names } => {
            for n in names {
                let _: wire::Container = send(
                    client,
                    Method::POST,
                    &format!("/api/v1/containers/{}/restart", enc(&n)),
                    Some(serde_json::json!({ "timeout": time })),
                )
                .await?;
                println!("{n}");
            }
            Ok(())
        }
        ContainerCommand::Rm { force, names } => {
            for n in names {
                let _: serde_json::Value = send(
                    client,
                    Method::DELETE,
                    &format!("/api/v1/containers/{}?force={force}", enc(&n)),
                    None,
                )
                .await?;
                println!("{n}");
            }
            Ok(())
        }
        ContainerCommand::Freeze { name } => {
            let _: wire::Container = send(
                client,
                Method::POST,
                &format!("/api/v1/containers/{}/freeze", enc(&name)),
                None,
            )
            .await?;
            println!("{name}");
            Ok(())
        }
        ContainerCommand::Thaw { name } => {
            let _: wire::Container = send(
                client,
                Method::POST,
                &format!("/api/v1/containers/{}/thaw", enc(&name)),
                None,
            )
            .await?;
            println!("{name}");
            Ok(())
        }
        ContainerCommand::Inspect { name } => {
            let c: serde_json::Value = send(
                client,
                Method::GET,
                &format!("/api/v1/containers/{}", enc(&name)),
                None,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&c)?);
            Ok(())
        }
        ContainerCommand::Logs { follow, tail, name } => {
            let mut path = format!("/api/v1/containers/{}/logs?follow={follow}", enc(&name));
            if let Some(t) = tail {
                path.push_str(&format!("&tail={t}"));
            }
            print_stream(client, &path).await
        }
        ContainerCommand::Exec {
            env,
            interactive,
            tty,
            detach_keys,
            timeout,
            name,
            command,
        } => {
            if interactive || tty {
                let opts = super::term::Options::new(interactive, tty, detach_keys.as_deref())?;
                let outcome =
                    super::term::exec(client, &name, command, env, timeout, &opts).await?;
                std::process::exit(exit_status(outcome));
            }
            let body = serde_json::to_vec(&wire::ExecRequest {
                command,
                env,
                timeout,
            })?;
            let code = exec_streamed(client, &name, body).await?;
            std::process::exit(code);
        }
        ContainerCommand::Attach {
            detach_keys,
            no_stdin,
            name,
        } => {
            let c: wire::Container = send(
                client,
                Method::GET,
                &format!("/api/v1/containers/{}", enc(&name)),
                None,
            )
            .await?;
            let opts = super::term::Options::new(
                !no_stdin && (c.spec.open_stdin || c.spec.tty),
                c.spec.tty,
                detach_keys.as_deref(),
            )?;
            let outcome = super::term::attach(client, &name, false, &opts).await?;
            std::process::exit(exit_status(outcome));
        }
        ContainerCommand::Update {
            name,
            limits,
            undo,
            to,
        } => {
            let c = if undo {
                undo_limits(client, &name, &limits, to).await?
            } else {
                update_limits(client, &name, &limits).await?
            };
            println!("{}", serde_json::to_string(&c.limits)?);
            Ok(())
        }
        ContainerCommand::Image(ImageCommand::Import { file, tag }) => {
            // The file is uploaded, so a remote daemon (`--host https://…`) can import it.
            let f = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot open {file}"))?;
            let meta = f
                .metadata()
                .await
                .with_context(|| format!("cannot read {file}"))?;
            if meta.is_dir() {
                return import_directory(client, &file, tag).await;
            }
            let filename = std::path::Path::new(&file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut query = format!("filename={}", enc(&filename));
            if let Some(t) = &tag {
                query.push_str(&format!("&tag={}", enc(t)));
            }
            let total = meta.len();
            let bar = std::sync::Arc::new(std::sync::Mutex::new(ProgressBar::new(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
            )));
            let upload_bar = bar.clone();
            let (mut done, mut failed) = (None, None);
            client
                .upload_lines(
                    &format!("/api/v1/images/import?{query}"),
                    f,
                    total,
                    move |current| {
                        let ev = wire::ImportProgress {
                            current,
                            total,
                            ..wire::ImportProgress::new("upload")
                        };
                        upload_bar
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .show(&ev);
                    },
                    &mut |line| match serde_json::from_slice::<wire::ImportProgress>(line) {
                        Ok(ev) if ev.status == "done" => done = ev.image,
                        Ok(ev) if ev.status == "error" => failed = ev.error,
                        Ok(ev) => bar.lock().unwrap_or_else(|p| p.into_inner()).show(&ev),
                        Err(_) => {}
                    },
                )
                .await?;
            let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
            bar.finish();
            if let Some(e) = failed {
                bail!("{}", e.message);
            }
            let img = done.context("the daemon ended the import without a result")?;
            if img.tags.is_empty() {
                println!("Loaded image ID: {}", img.id);
            }
            for t in &img.tags {
                println!("Loaded image: {t}");
            }
            Ok(())
        }
        ContainerCommand::Images | ContainerCommand::Image(ImageCommand::Ls) => {
            let list: Vec<wire::Image> = send(client, Method::GET, "/api/v1/images", None).await?;
            println!("{:<32} {:<20} {:>10} LAYERS", "TAG", "ID", "SIZE");
            for i in list {
                let id = i.id.trim_start_matches("sha256:");
                println!(
                    "{:<32} {:<20} {:>10} {}",
                    i.tags.join(","),
                    &id[..id.len().min(12)],
                    format!("{:.1}M", i.size as f64 / (1 << 20) as f64),
                    i.layers.len()
                );
            }
            Ok(())
        }
        ContainerCommand::Image(ImageCommand::Rm { image }) => {
            let _: serde_json::Value = send(
                client,
                Method::DELETE,
                &format!("/api/v1/images/{}", enc(&image)),
                None,
            )
            .await?;
            println!("{image}");
            Ok(())
        }
    }
}

/// An OCI layout directory is imported in place, by its path: the daemon must see it (a local
/// daemon); a remote one needs it packed with tar and uploaded.
async fn import_directory(client: &Client, dir: &str, tag: Option<String>) -> anyhow::Result<()> {
    let path = std::fs::canonicalize(dir).with_context(|| format!("cannot find {dir}"))?;
    let body = serde_json::to_value(wire::ImportImage {
        path: path.display().to_string(),
        tag,
    })?;
    let img: wire::Image = send(client, Method::POST, "/api/v1/images/import", Some(body))
        .await
        .with_context(|| {
            format!(
                "{dir} is a directory, imported by path on the daemon's host (tar it to upload it)"
            )
        })?;
    if img.tags.is_empty() {
        println!("Loaded image ID: {}", img.id);
    }
    for t in &img.tags {
        println!("Loaded image: {t}");
    }
    Ok(())
}

fn parse_volume(v: &str) -> anyhow::Result<wire::Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => bail!("volume {v:?} must be SRC:DST[:ro]"),
    };
    let src = std::fs::canonicalize(src)
        .with_context(|| format!("volume source {src} does not exist"))?;
    Ok(wire::Mount {
        kind: "bind".into(),
        source: Some(src.display().to_string()),
        destination: dst.to_owned(),
        readonly: ro,
    })
}

/// The API request of `run`/`create`'s flags.
fn create_request(
    a: &SpecArgs,
    start: bool,
    auto_remove: bool,
) -> anyhow::Result<wire::CreateContainer> {
    let mut rest = a.rest.clone();
    let image = if a.rootfs.is_none() {
        if rest.is_empty() {
            bail!("give an IMAGE or --rootfs DIR");
        }
        Some(rest.remove(0))
    } else {
        None
    };
    let rootfs = a
        .rootfs
        .as_deref()
        .map(|r| std::fs::canonicalize(r).map(|p| p.display().to_string()))
        .transpose()
        .context("--rootfs directory does not exist")?;
    let mut mounts = a
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for t in &a.tmpfs {
        mounts.push(wire::Mount {
            kind: "tmpfs".into(),
            source: None,
            destination: t.clone(),
            readonly: false,
        });
    }
    Ok(wire::CreateContainer {
        name: a.name.clone(),
        team: a.team.clone(),
        image,
        rootfs,
        command: rest,
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        hostname: a.hostname.clone(),
        user: a.user.clone(),
        limits: a.limits.to_limits()?,
        mounts,
        network: a.network.clone(),
        ports: a.publish.clone(),
        restart: a.restart.clone(),
        stop_timeout: a.stop_timeout,
        auto_remove,
        start,
        labels: a.labels.iter().cloned().collect(),
        userns: a.userns.clone(),
        tty: a.tty,
        open_stdin: a.interactive,
    })
}

/// `POST /api/v1/containers`; a refusal names the flag (`--cpus: …`, `--label: …`).
async fn create(client: &Client, req: &wire::CreateContainer) -> anyhow::Result<wire::Container> {
    send(
        client,
        Method::POST,
        "/api/v1/containers",
        Some(serde_json::to_value(req)?),
    )
    .await
    .map_err(super::limits::name_the_flag)
    .map_err(|e| super::name_field(e, &SPEC_FLAGS))
}

/// The API field each flag of `run`/`create` fills, so a refusal names the flag.
const SPEC_FLAGS: [(&str, &str); 14] = [
    ("name", "--name"),
    ("team", "--team"),
    ("hostname", "--hostname"),
    ("env", "--env"),
    ("mounts", "--volume/--tmpfs"),
    ("user", "--user"),
    ("workdir", "--workdir"),
    ("network", "--network"),
    ("ports", "--publish"),
    ("restart", "--restart"),
    ("userns", "--userns"),
    ("rootfs", "--rootfs"),
    ("labels", "--label"),
    ("stop_timeout", "--stop-timeout"),
];

async fn run_container(client: &Client, a: RunArgs) -> anyhow::Result<()> {
    // Detached: the daemon removes it on exit. Attached: we remove it after reading the code.
    let req = create_request(&a.spec, true, a.rm && a.detach)?;
    let c = create(client, &req).await?;
    if a.detach {
        println!("{}", c.name);
        return Ok(());
    }
    if a.spec.interactive || a.spec.tty {
        let opts =
            super::term::Options::new(a.spec.interactive, a.spec.tty, a.detach_keys.as_deref())?;
        // Attached right after the start; `logs` replays what it printed meanwhile.
        match super::term::attach(client, &c.name, true, &opts).await {
            Ok(super::term::Outcome::Detached) => std::process::exit(0),
            Ok(super::term::Outcome::Exit(code)) => {
                if a.rm {
                    remove_quietly(client, &c.name).await;
                }
                std::process::exit(code.clamp(0, 255));
            }
            // It ended before we attached: its output is in its log.
            Err(e) if is_not_running(&e) => {}
            Err(e) => return Err(e),
        }
    }
    attach(client, &c.name, 0, a.rm).await
}

fn is_not_running(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<crate::client::ClientError>(),
        Some(crate::client::ClientError::Api { status, .. }) if status.as_u16() == 409
    )
}

async fn remove_quietly(client: &Client, name: &str) {
    let _: anyhow::Result<serde_json::Value> = send(
        client,
        Method::DELETE,
        &format!("/api/v1/containers/{}?force=true", enc(name)),
        None,
    )
    .await;
}

/// The CLI's exit status after a session: the process's code, 0 after a detach.
fn exit_status(outcome: super::term::Outcome) -> i32 {
    match outcome {
        super::term::Outcome::Exit(code) => code.clamp(0, 255),
        super::term::Outcome::Detached => 0,
    }
}

/// Streams a started container's output, after its first `skip` bytes, until it exits; then
/// (with `rm`) removes it and exits with its code.
async fn attach(client: &Client, name: &str, mut skip: usize, rm: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    client
        .stream(
            &format!("/api/v1/containers/{}/logs?follow=true", enc(name)),
            |chunk| {
                let n = skip.min(chunk.len());
                skip -= n;
                let _ = out.write_all(&chunk[n..]);
                let _ = out.flush();
            },
        )
        .await?;
    let done: wire::Container = send(
        client,
        Method::GET,
        &format!("/api/v1/containers/{}", enc(name)),
        None,
    )
    .await?;
    let code = done.exit_code.unwrap_or(0);
    if rm {
        let _: serde_json::Value = send(
            client,
            Method::DELETE,
            &format!("/api/v1/containers/{}?force=true", enc(name)),
            None,
        )
        .await?;
    }
    std::process::exit(code.clamp(0, 255));
}

/// `docker load`-style progress on stderr: a redrawn bar on a terminal, one line per finished
/// step otherwise.
struct ProgressBar {
    tty: bool,
    /// The step on screen (status, layer) and whether its line is still open.
    current: Option<(String, Option<u32>)>,
    open: bool,
}

impl ProgressBar {
    fn new(tty: bool) -> Self {
        Self {
            tty,
            current: None,
            open: false,
        }
    }

    fn show(&mut self, ev: &wire::ImportProgress) {
        let key = (ev.status.clone(), ev.layer);
        let label = match (ev.status.as_str(), ev.layer, ev.layers) {
            ("upload", ..) => "Uploading".to_owned(),
            ("unpack", ..) => "Reading file".to_owned(),
            ("layer", Some(i), Some(n)) => {
                let id = ev.id.as_deref().unwrap_or("").trim_start_matches("sha256:");
                format!("Loading layer {i}/{n} {}", &id[..id.len().min(12)])
            }
            _ => return,
        };
        let finished = ev.total > 0 && ev.current >= ev.total;
        if self.current.as_ref() == Some(&key) && !self.open {
            return; // this step was already shown as finished
        }
        if self.current.as_ref() != Some(&key) {
            self.finish();
            self.current = Some(key);
        }
        let width = 40usize;
        let filled = if ev.total == 0 {
            0
        } else {
            (ev.current.min(ev.total) as u128 * width as u128 / ev.total as u128) as usize
        };
        let bar = if filled >= width {
            "=".repeat(width)
        } else {
            format!("{}>{}", "=".repeat(filled), " ".repeat(width - filled - 1))
        };
        let text = format!("{label} [{bar}] {}/{}", human(ev.current), human(ev.total));
        if self.tty {
            eprint!("\r\x1b[K{text}");
            self.open = !finished;
            if finished {
                eprintln!();
            }
        } else {
            self.open = !finished;
            if finished {
                eprintln!("{text}");
            }
        }
    }

    /// Ends an open line.
    fn finish(&mut self) {
        if self.open && self.tty {
            eprintln!();
        }
        self.open = false;
    }
}

/// Bytes as `docker load` prints them (decimal units).
fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1M").is_err());
    }
}
