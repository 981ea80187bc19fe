"""Overlay package level: merged with the installed ``espnet2.asr.frontend``.

``pkgutil.extend_path`` appends the installed package directory of the same
name to ``__path__``, so ESPnet's own front-ends (``default``, ``s3prl``, ...)
import as usual and this repository adds ``robust_distiller``.
"""

import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
