import sys

from mrcnn.export.command import main

sys.exit(main())
