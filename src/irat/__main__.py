import sys

from irat.cli.main import main

sys.exit(main())
