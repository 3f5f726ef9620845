"""The plain REPL (``mcode chat --plain``): a line-mode front end of the Session."""
