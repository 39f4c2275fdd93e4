mod containers;
mod pages;
mod shell;
mod surfaces;
mod teams;
