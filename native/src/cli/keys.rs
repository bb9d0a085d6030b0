//! `lens keys create | list | revoke`: the API keys of a data directory's catalog. Works beside a running
//! `lens serve` (SQLite WAL); a revoked key is refused from its next request.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use lens_store::{Catalog, NewKey, Scope};
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; prints `{"id", "key", ...}` once — only the key's hash is kept.
    Create(CreateArgs),
    /// Every key (never a secret), revoked ones too, one JSON object per line.
    List(DataArgs),
    /// Revoke a key by its id (`key_…`).
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct DataArgs {
    /// The data directory of `lens serve` (its catalog.sqlite3). Default `./lens-data`.
    #[arg(long, env = "LENS_DATA", value_name = "DIR", default_value = "lens-data")]
    pub data: PathBuf,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// What the key is for (shown by `list`).
    #[arg(long)]
    pub name: String,
    /// read (search, list, read), write (also upload, delete, caption, chat, jobs) or admin (also every
    /// tenant's data, rebuilds, the sync feed, metrics).
    #[arg(long, value_parser = ["read", "write", "admin"])]
    pub scope: String,
    /// Whose data the key sees and makes; keys of one tenant share it. Default: the key's name.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Requests per second for this key (default: the server's --rate-limit).
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
}

fn open(data: &DataArgs) -> Result<Catalog> {
    let path = data.data.join("catalog.sqlite3");
    if !path.is_file() {
        bail!("no catalog at {} (pass the data directory of lens serve with --data)", path.display());
    }
    Catalog::open(&path).with_context(|| format!("cannot open catalog {}", path.display()))
}

pub fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Create(args) => {
            let catalog = open(&args.data)?;
            let scope = Scope::parse(&args.scope).context("scope must be read, write or admin")?;
            let tenant = args.tenant.as_deref().unwrap_or(&args.name);
            let (key, secret) = catalog.create_key(&NewKey { name: &args.name, tenant, scope, rate: args.rate })?;
            let mut out = serde_json::to_value(&key)?;
            out["key"] = json!(secret);
            println!("{out}");
        }
        KeysCommand::List(data) => {
            for key in open(&data)?.list_keys()? {
                println!("{}", serde_json::to_string(&key)?);
            }
        }
        KeysCommand::Revoke { data, id } => {
            if !open(&data)?.revoke_key(&id)? {
                bail!("no live key `{id}` (see lens keys list)");
            }
            println!("{}", json!({"id": id, "revoked": true}));
        }
    }
    Ok(())
}
