mod billing;
mod containers;
mod pages;
mod recommend;
mod shell;
mod surfaces;
mod teams;
mod terminal;
