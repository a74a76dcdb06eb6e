"""Phenosync server: the only package that knows Starlette and the ORM."""
