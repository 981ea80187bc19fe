#!/usr/bin/env python3
"""ESPnet's ``asr_train`` with ``frontend: robust_distiller`` selectable.

Stock ``python -m espnet2.bin.asr_train`` does not know this project's front-end; this
wrapper registers it in ESPnet's front-end choices, then runs ESPnet's entry point with
the same options.
"""

from espnet2.asr.frontend.robust_distiller import register

register()

from espnet2.bin.asr_train import main  # noqa: E402

if __name__ == "__main__":
    main()
