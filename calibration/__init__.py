"""Calibration sets of real aligned face crops for INT8."""
