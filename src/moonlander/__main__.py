import sys

from moonlander.cli.main import main

sys.exit(main())
