"""The trading appliance: engine, exchange simulator, admin panel and image tooling."""

from app import native

# Before any engine module is imported: the compiled build, when it matches the sources.
native.install()
