"""Tests of the control socket, its protocol and the CLI client."""
