"""Command-line helpers behind the Makefile's AWS targets (`make preflight`, `make rotate-password`)."""
