"""Shared test helpers: tiny stores, tiny runs, fault injection (imported by test modules)."""
