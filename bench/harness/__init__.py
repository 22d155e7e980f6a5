"""The benchmark harness behind bench/run: sets up, runs each server under the same
load, and reports. Standard library only, so it runs on the system python3."""
