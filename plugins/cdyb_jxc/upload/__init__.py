"""The upload engine: sources, hold-back, sending, results, source issues and reports."""
