"""Automatic ROI: landmark detector runs, detection, evaluation, review."""
