import sys

from vmbmc.cli import main

sys.exit(main())
