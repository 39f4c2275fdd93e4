mod assets;
mod health;
mod host;
