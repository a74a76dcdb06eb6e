"""The contract of Phenosync: wire messages, vocabularies, error codes.

No I/O beyond reading the data files shipped in this package, and no web,
ORM or data-frame imports: every other package may import this one.
"""
