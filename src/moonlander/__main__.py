import sys

from moonlander.cli import main

sys.exit(main())
