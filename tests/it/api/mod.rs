mod assets;
mod auth;
mod containers;
mod containers_auth;
mod health;
mod host;
