"""Integration tests of stasis_app against real Asterisk."""
