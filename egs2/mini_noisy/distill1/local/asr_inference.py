#!/usr/bin/env python3
"""ESPnet's ``asr_inference`` for models whose config says ``frontend: robust_distiller``.

Registers the front-end (see ``local/asr_train.py``), then runs ESPnet's entry point with
the same options.
"""

from espnet2.asr.frontend.robust_distiller import register

register()

from espnet2.bin.asr_inference import main  # noqa: E402

if __name__ == "__main__":
    main()
