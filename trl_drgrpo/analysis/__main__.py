"""``python -m trl_drgrpo.analysis <command> ...``"""

import sys

from .cli import main

sys.exit(main())
