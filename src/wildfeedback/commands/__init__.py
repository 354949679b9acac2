"""Command groups of the `wildfeedback` CLI, one module each; `cli.py` mounts them."""
