"""`python -m wildfeedback`: the CLI, in whatever interpreter runs it."""

from wildfeedback.cli import main

main()
