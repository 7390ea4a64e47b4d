"""Command-line entry points; each module parses arguments, calls one library function and has
``main(argv=None) -> int``.

``gblsr COMMAND`` (:mod:`gblsr.cli.main`) runs them all; each is also installed as
``gblsr-COMMAND``: train, eval, reconstruct, encode, decode, convert, cmsr, measure-latency.
"""

__all__: list[str] = []
