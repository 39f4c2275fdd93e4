mod health;
mod host;
