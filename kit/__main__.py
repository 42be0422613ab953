import sys

from kit.lessons.cli import main

sys.exit(main())
