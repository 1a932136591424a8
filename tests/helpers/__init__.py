"""Shared test helpers: builders of weights files and pickles (no torch), the CDP browser client, parity
recipes. Tests import them as `from helpers.NAME import ...`."""
