mod containers;
mod health;
mod host;
