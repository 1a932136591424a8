"""Flax generator and predictor families; each module is one network family."""
