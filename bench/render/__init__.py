"""The sections and plots of docs/benchmarks.md, each drawn from one benchmark's stored figures.

Why apart from the benchmarks: rendering needs no stack and no Temporal import, so the
page can be re-rendered (and tested) in a second from the JSON files alone.
"""
