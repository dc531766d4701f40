"""CLI commands, one module per stage; heavy libraries are imported inside the functions."""
