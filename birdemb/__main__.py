import sys

from birdemb.cli import main

sys.exit(main())
