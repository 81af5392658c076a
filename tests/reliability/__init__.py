"""Reliability runs: long endurance scripts (python -m tests.reliability.NAME) and their parts."""
