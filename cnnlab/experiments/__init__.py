"""Experiments: run folders with resume, the run registry, sweeps, and the lab."""
