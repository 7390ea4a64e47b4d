"""Command-line entry points; each module has ``main(argv=None) -> int``.

gblsr-train, gblsr-eval, gblsr-measure-latency, gblsr-reconstruct, gblsr-encode, gblsr-decode.
"""

__all__: list[str] = []
