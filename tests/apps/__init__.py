"""Tiny WSGI apps served by real servers in tests."""
