"""Package discovery that pyproject.toml cannot express: every ``generator*`` package
found in the tree, plus ``generator.templates``, which lives at the repository root
(``templates/``, mapped by ``[tool.setuptools.package-dir]``) so that a wheel ships the
Jinja templates and static files. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["generator*"]), "generator.templates"])
