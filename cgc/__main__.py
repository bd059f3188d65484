import sys

from cgc.cli import main

sys.exit(main())
