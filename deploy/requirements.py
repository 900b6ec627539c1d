"""Print requirements from pyproject.toml, one per line: the base dependencies, or with
`--extra NAME` (repeatable) only those of the named extras. Used by the Dockerfiles to install
dependencies in layers before the source is copied (so editing code does not reinstall them)."""
import argparse
import tomllib
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--extra", action="append", default=[])
ap.add_argument("--pyproject", default=str(Path(__file__).with_name("pyproject.toml")))
a = ap.parse_args()
project = tomllib.loads(Path(a.pyproject).read_text())["project"]
reqs = [r for e in a.extra for r in project["optional-dependencies"][e]] if a.extra else project["dependencies"]
print("\n".join(reqs))
