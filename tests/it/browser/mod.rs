mod shell;
