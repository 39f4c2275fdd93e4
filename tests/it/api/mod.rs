mod billing;
mod health;
mod host;
