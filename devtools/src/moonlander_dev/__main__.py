import sys

from moonlander_dev.cli import main

sys.exit(main())
