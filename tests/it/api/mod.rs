mod assets;
mod health;
