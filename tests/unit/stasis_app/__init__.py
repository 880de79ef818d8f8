"""Unit tests of stasis_app."""
