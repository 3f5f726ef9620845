import sys

from mcode.cli import main

sys.exit(main())
