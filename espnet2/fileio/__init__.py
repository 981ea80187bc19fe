"""Overlay package level: merged with the installed ``espnet`` distribution.

``pkgutil.extend_path`` appends the installed package directory of the same
name to ``__path__``; this repository comes first on ``sys.path`` (see
``tools/setup.sh``), so modules defined here win and everything else is
resolved from the installed ESPnet.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
