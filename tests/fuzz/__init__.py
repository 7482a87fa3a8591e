"""Fuzzing of the pure protocol pieces (framer and decoder); see ``fuzz_framer.py``."""
